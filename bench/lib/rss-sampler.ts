/** Peak resident set size while something runs: sampled, plus the kernel's lifetime maximum. */

export interface MemoryPeak {
  /** Highest `process.memoryUsage().rss` seen while sampling, in bytes. */
  sampledPeakRss: number;
  /** `process.resourceUsage().maxRSS` when sampling stopped, in bytes: the process's lifetime peak. */
  maxRss: number;
}

export function startRssSampler(intervalMs = 50): { stop(): MemoryPeak } {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      // maxRSS is in kilobytes on Linux.
      return { sampledPeakRss: peak, maxRss: process.resourceUsage().maxRSS * 1024 };
    },
  };
}
