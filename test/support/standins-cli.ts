/**
 * `npm run standins`: starts s3rver and DynamoDB Local for manual use, prints
 * how to reach them, and stops them on Ctrl-C.
 */
import { startStandins } from './standins.ts';

const standins = await startStandins();
const exports = Object.entries(standins.env).map(([name, value]) => `export ${name}=${value}`);
console.log(
  [
    `S3 (s3rver):     ${standins.s3Endpoint}`,
    `DynamoDB Local:  ${standins.dynamodbEndpoint}`,
    `Secrets Manager: ${standins.secretsManagerEndpoint}`,
    `Region:          ${standins.region}`,
    '',
    'For the CLI and the AWS SDK in another shell:',
    ...exports,
    '',
    'Data lives in a temp directory and is removed on exit. Ctrl-C to stop.',
  ].join('\n'),
);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await standins.stop();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
