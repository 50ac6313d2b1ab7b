import { cloudBackend } from '../support/backends.ts';
import { useStandins } from '../support/global-standins.ts';
import { mirrorSuite } from './mirror.suite.ts';

mirrorSuite(cloudBackend(useStandins()));
