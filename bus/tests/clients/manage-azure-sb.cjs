// Drives npm azure-sb 0.11.2 (the REST-era library, installed by install.sh) against weft's bus over HTTPS:
// its connection string has Endpoint=sb://localhost:PORT, which the library turns into https:// itself;
// the bus's development CA is trusted through NODE_EXTRA_CA_CERTS (a public Node option).
// Usage: node manage-azure-sb.cjs  (connection string in SB_CONNECTION_STRING)
// Prints one JSON object with what the library saw; amqp/tests/manage_sdk.rs checks it. Errors exit 1.
"use strict";
const azure = require("azure-sb");
const { promisify } = require("util");

const step = (s) => process.stderr.write(`step: ${s}\n`);
const sb = azure.createServiceBusService(process.env.SB_CONNECTION_STRING);
// Callback APIs with (error, result, response): resolve with [result, response].
const call = (fn, ...args) =>
  new Promise((resolve, reject) =>
    sb[fn](...args, (err, result, response) => (err ? reject(err) : resolve([result, response]))),
  );

(async () => {
  const out = {};
  step("createQueueIfNotExists");
  out.created = (await call("createQueueIfNotExists", "sb-jobs", { LockDuration: "PT45S", MaxDeliveryCount: "4" }))[0];
  out.createdAgain = (await call("createQueueIfNotExists", "sb-jobs"))[0];
  step("getQueue");
  const q = (await call("getQueue", "sb-jobs"))[0];
  out.queue = { name: q.QueueName, lockDuration: q.LockDuration, maxDeliveryCount: q.MaxDeliveryCount };
  step("listQueues");
  out.queues = (await call("listQueues"))[0].map((x) => x.QueueName);
  step("topics");
  out.topicCreated = (await call("createTopicIfNotExists", "sb-events"))[0];
  await call("createSubscription", "sb-events", "accounts");
  await call("createSubscription", "sb-events", "all");
  await call("deleteRule", "sb-events", "accounts", "$Default");
  await call("createRule", "sb-events", "accounts", "only-accounts", { sqlExpressionFilter: "sys.Label = 'account'" });
  out.rules = (await call("listRules", "sb-events", "accounts"))[0].map((r) => ({
    name: r.RuleName,
    sql: r.Filter && r.Filter.SqlExpression,
  }));
  out.subscriptions = (await call("listSubscriptions", "sb-events"))[0].map((s) => s.SubscriptionName);
  step("get and list topics, get subscription and rule");
  out.topic = (await call("getTopic", "sb-events"))[0].TopicName;
  out.topics = (await call("listTopics"))[0].map((t) => t.TopicName);
  const sub = (await call("getSubscription", "sb-events", "accounts"))[0];
  out.subscription = { topic: sub.TopicName, name: sub.SubscriptionName, lockDuration: sub.LockDuration };
  const rule = (await call("getRule", "sb-events", "accounts", "only-accounts"))[0];
  out.rule = { name: rule.RuleName, sql: rule.Filter && rule.Filter.SqlExpression };
  step("messages through the runtime entities (REST)");
  await call("sendQueueMessage", "sb-jobs", { body: "hello over https", customProperties: { n: 7 } });
  const m = (await call("receiveQueueMessage", "sb-jobs", { isPeekLock: true, timeoutIntervalInS: 5 }))[0];
  out.received = { body: m.body, n: m.customProperties.n, location: m.location };
  await call("deleteMessage", m);
  await call("sendTopicMessage", "sb-events", { body: "contact", brokerProperties: { Label: "contact" } });
  await call("sendTopicMessage", "sb-events", { body: "account", brokerProperties: { Label: "account" } });
  const a = (await call("receiveSubscriptionMessage", "sb-events", "accounts", { timeoutIntervalInS: 5 }))[0];
  out.accountsGot = a.body;
  step("delete");
  await call("deleteQueue", "sb-jobs");
  try {
    await call("getQueue", "sb-jobs");
    out.afterDelete = "still there";
  } catch (e) {
    out.afterDelete = e.code || String(e);
  }
  await call("deleteTopic", "sb-events");
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
