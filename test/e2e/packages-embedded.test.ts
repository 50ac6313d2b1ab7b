import { embeddedBackend } from '../support/backends.ts';
import { packagesSuite } from './packages.suite.ts';

packagesSuite(embeddedBackend);
