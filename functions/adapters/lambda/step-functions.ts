/** Starting a sync run: one Step Functions execution named after the run id. */
import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { ConflictError, UnavailableError } from '../../core/errors.ts';

// One client per container; the SDK reads AWS_ENDPOINT_URL_SFN itself (tests point it at a stand-in).
let client: SFNClient | undefined;

/** Starts `stateMachineArn` with execution name `runId`. ConflictError when that name was used. */
export async function startSyncRun(stateMachineArn: string, runId: string): Promise<string> {
  client ??= new SFNClient({});
  try {
    const started = await client.send(
      new StartExecutionCommand({ stateMachineArn, name: runId, input: JSON.stringify({ runId }) }),
    );
    return started.executionArn ?? runId;
  } catch (error) {
    if (error instanceof ExecutionAlreadyExists) throw new ConflictError(`sync run ${runId} was already started`, { cause: error });
    const name = (error as { name?: string }).name ?? '';
    if (/Throttl|ServiceUnavailable|InternalServerError/.test(name)) {
      throw new UnavailableError(`Step Functions refused to start run ${runId} for now: ${name}`, { cause: error });
    }
    throw error;
  }
}
