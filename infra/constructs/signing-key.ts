import { RemovalPolicy, SecretValue } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { ENV } from '../../functions/adapters/lambda/environment.ts';
import { SIGNING_KEYS_FORMAT } from '../../functions/core/signing-keys.ts';
import type { MirrorFunction } from './mirror-function.ts';

export interface SigningKeyProps {
  /** An existing secret holding the signing keys document. @default a new secret, filled with a key on the first sync */
  readonly existingSecretArn?: string;
}

/**
 * The secret that holds the mirror's OpenPGP signing keys (re-signed mode).
 * Created holding a keyless document: the signing function generates the
 * first key there on its first run, so no private key ever passes through
 * CloudFormation. Kept when the stack is deleted: clients trust its key.
 */
export class SigningKey extends Construct {
  public readonly secret: secretsmanager.ISecret;

  constructor(scope: Construct, id: string, props: SigningKeyProps = {}) {
    super(scope, id);
    this.secret = props.existingSecretArn
      ? secretsmanager.Secret.fromSecretCompleteArn(this, 'Secret', props.existingSecretArn)
      : new secretsmanager.Secret(this, 'Secret', {
          description: "skystreams: the mirror's OpenPGP signing keys (re-signed metadata); rotate with `skystreams key rotate`",
          secretObjectValue: { format: SecretValue.unsafePlainText(SIGNING_KEYS_FORMAT) },
          removalPolicy: RemovalPolicy.RETAIN,
        });
  }

  /** The one function that signs: it reads the keys, and writes the first one. No other function is granted anything. */
  grantSigning(signer: MirrorFunction): void {
    this.secret.grantRead(signer.role);
    this.secret.grantWrite(signer.role);
    signer.function.addEnvironment(ENV.signingSecret, this.secret.secretArn);
  }
}
