import { Annotations, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { SkystreamsConfig } from '../config.ts';
import { EdgeAccessControl } from '../constructs/edge-access-control.ts';
import { MirrorApi } from '../constructs/mirror-api.ts';
import { MirrorDistribution } from '../constructs/mirror-distribution.ts';
import { MirrorStorage } from '../constructs/mirror-storage.ts';
import { Operations } from '../constructs/operations.ts';
import { SyncPipeline } from '../constructs/sync-pipeline.ts';
import { SigningKey } from '../constructs/signing-key.ts';
import { suppressAcceptedFindings } from '../nag-suppressions.ts';

export interface MirrorStackProps extends StackProps {
  readonly config: SkystreamsConfig;
}

/** The whole serverless mirror: storage, sync pipeline, delivery, operations. */
export class MirrorStack extends Stack {
  public readonly storage: MirrorStorage;
  public readonly sync: SyncPipeline;
  /** Re-signed mode only. */
  public readonly signingKey: SigningKey | undefined;
  public readonly api: MirrorApi;
  public readonly delivery: MirrorDistribution;
  public readonly accessControl: EdgeAccessControl;
  public readonly operations: Operations;

  constructor(scope: Construct, id: string, props: MirrorStackProps) {
    super(scope, id, props);
    const { config } = props;

    if (!config.keyring) {
      Annotations.of(this).addWarningV2(
        'skystreams:keyring-missing',
        `${config.keyringSource} does not exist on this machine, so no keyring is bundled and every sync will fail ` +
          'until you set keyring.file (or keyring.armored) to the keyring that signs the upstream and deploy again (docs/deploy.md)',
      );
    }

    this.storage = new MirrorStorage(this, 'Storage');
    const { bucket, table } = this.storage;

    this.signingKey = config.sync.resign
      ? new SigningKey(this, 'SigningKey', config.signingKeySecretArn ? { existingSecretArn: config.signingKeySecretArn } : {})
      : undefined;
    this.sync = new SyncPipeline(this, 'Sync', {
      bucket,
      table,
      sync: config.sync,
      keyring: config.keyring,
      sourceKeyrings: config.sourceKeyrings,
      scheduleMinutes: config.scheduleMinutes,
      ...(this.signingKey && { signingKey: this.signingKey }),
    });

    this.api = new MirrorApi(this, 'Api', { bucket, table, resign: config.sync.resign });
    this.accessControl = new EdgeAccessControl(this, 'AccessControl', config.accessControl);
    this.delivery = new MirrorDistribution(this, 'Delivery', {
      bucket,
      api: this.api,
      logBucket: this.storage.logBucket,
      ...(config.customDomain && { customDomain: config.customDomain }),
      accessControl: this.accessControl,
    });

    this.operations = new Operations(this, 'Operations', {
      stateMachine: this.sync.stateMachine,
      functions: { ...this.sync.functions, api: this.api.handler.function },
      api: this.api.api,
      scheduleMinutes: config.scheduleMinutes,
      staleAfterChecks: config.alarms.staleAfterChecks,
      staleAfterDays: config.alarms.staleAfterDays,
      dashboard: config.alarms.dashboard,
      copyLogGroup: this.sync.copyFunction.logGroup,
      ...(config.alarms.email && { email: config.alarms.email }),
      ...(config.alarms.topicArn && { extraTopicArn: config.alarms.topicArn }),
    });

    this.outputs(config);
    suppressAcceptedFindings(this);
  }

  private outputs(config: SkystreamsConfig): void {
    const baseUrl = this.delivery.baseUrl;
    const keyring = config.maasKeyringPath;
    new CfnOutput(this, 'BaseUrl', { description: 'The mirror, for MAAS and browsers (HTTP works too)', value: baseUrl });
    new CfnOutput(this, 'MaasUpdateBootSource', {
      description: "Points MAAS's default boot source at the mirror (run on a machine logged in to MAAS as $PROFILE)",
      value: `maas $PROFILE boot-source update 1 url=${baseUrl} keyring_filename=${keyring}`,
    });
    new CfnOutput(this, 'MaasCreateBootSource', {
      description: 'Adds the mirror as another MAAS boot source instead',
      value: `maas $PROFILE boot-sources create url=${baseUrl} keyring_filename=${keyring}`,
    });
    if (this.signingKey) {
      // Re-signed mode: MAAS verifies with the mirror's own keyring, saved where keyring_filename points.
      new CfnOutput(this, 'FetchMirrorKeyring', {
        description: "Re-signed mode: saves the mirror's public keyring where the MAAS commands point (run on each region controller)",
        value: `curl -fsSo ${keyring} ${baseUrl}keyring.gpg`,
      });
      new CfnOutput(this, 'MaasUpdateBootSourceKeyringData', {
        description: "Re-signed mode, the other way: keeps the mirror's keyring in MAAS's database, so every region controller of an HA MAAS has it",
        value: `curl -fsSo skystreams-keyring.gpg ${baseUrl}keyring.gpg && maas $PROFILE boot-source update 1 url=${baseUrl} keyring_filename="" keyring_data@=skystreams-keyring.gpg`,
      });
      new CfnOutput(this, 'SigningKeySecretArn', {
        description: 'The signing keys (skystreams key rotate|retire --signing-secret …)',
        value: this.signingKey.secret.secretArn,
      });
    }
    new CfnOutput(this, 'UploadsUrl', {
      description: 'POST a custom image here, SigV4-signed, once its files are under incoming/ (docs/custom-images.md)',
      value: this.api.uploadsUrl,
    });
    new CfnOutput(this, 'StatusUrl', { description: 'Sync runs and the current publication', value: `${baseUrl}api/v1/status` });
    new CfnOutput(this, 'BucketName', { value: this.storage.bucket.bucketName });
    new CfnOutput(this, 'TableName', { value: this.storage.table.tableName });
    new CfnOutput(this, 'StateMachineArn', { description: 'Start an execution to sync now', value: this.sync.stateMachine.stateMachineArn });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.operations.topic.topicArn });
    if (this.accessControl.users) {
      new CfnOutput(this, 'BasicAuthUsersArn', {
        description: 'CloudFront KeyValueStore of basic-auth users (docs/deploy.md, "Access control")',
        value: this.accessControl.users.keyValueStoreArn,
      });
    }
  }
}
