// Peer: bbc's sqs-consumer with the AWS SDK for JavaScript v3 Cognito client (one per region,
// the prefix of the pool id), at the SDK's default retry settings. batchSize 10 is sqs-consumer's documented way to process messages in
// parallel; a message whose handler throws is left to come back after the visibility timeout.
// Reads AWS_* and FEEDBACK_QUEUE_URL from the environment like the worker; runs until SIGTERM.
import { Consumer } from "sqs-consumer";
import { SQSClient } from "@aws-sdk/client-sqs";
import {
  AdminUpdateAuthEventFeedbackCommand,
  CognitoIdentityProviderClient,
} from "@aws-sdk/client-cognito-identity-provider";

const env = process.env;
const region = env.AWS_REGION;
const cognito = new Map();
function cognitoFor(poolId) {
  const poolRegion = poolId.split("_")[0];
  if (!cognito.has(poolRegion)) {
    cognito.set(
      poolRegion,
      new CognitoIdentityProviderClient({
        region: poolRegion,
        endpoint: env.AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER,
      }),
    );
  }
  return cognito.get(poolRegion);
}
const errors = new Map();

const consumer = Consumer.create({
  queueUrl: env.FEEDBACK_QUEUE_URL,
  sqs: new SQSClient({ region, endpoint: env.AWS_ENDPOINT_URL_SQS }),
  batchSize: 10,
  handleMessage: async (message) => {
    const verdict = JSON.parse(message.Body);
    await cognitoFor(verdict.UserPoolId).send(
      new AdminUpdateAuthEventFeedbackCommand({
        UserPoolId: verdict.UserPoolId,
        Username: verdict.Username,
        EventId: verdict.EventId,
        FeedbackValue: verdict.FeedbackValue,
      }),
    );
    return message;
  },
});

function count(err) {
  const name = err?.cause?.name ?? err?.name ?? "Error";
  errors.set(name, (errors.get(name) ?? 0) + 1);
}
consumer.on("processing_error", count);
consumer.on("error", count);

function shutdown() {
  consumer.stop();
  process.stdout.write(`errors ${JSON.stringify(Object.fromEntries(errors))}\n`);
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
consumer.start();
