import { embeddedBackend } from '../support/backends.ts';
import { mirrorSuite } from './mirror.suite.ts';

mirrorSuite(embeddedBackend);
