import { cloudBackend } from '../support/backends.ts';
import { useStandins } from '../support/global-standins.ts';
import { packagesSuite } from './packages.suite.ts';

packagesSuite(cloudBackend(useStandins()));
