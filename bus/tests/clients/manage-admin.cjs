// Drives @azure/service-bus 7.9.5's ServiceBusAdministrationClient (always https://{endpoint}/…) against
// weft's bus over HTTPS (development CA trusted through NODE_EXTRA_CA_CERTS), then sends and receives on a
// queue it created with the same SDK's ServiceBusClient over AMQP.
// Usage: node manage-admin.cjs  (SB_ADMIN_CONNECTION_STRING: Endpoint=sb://localhost:HTTPS_PORT;…,
// SB_CONNECTION_STRING: the emulator-style AMQP one). Prints one JSON object; errors exit 1.
"use strict";
const { ServiceBusAdministrationClient, ServiceBusClient } = require("@azure/service-bus");

const step = (s) => process.stderr.write(`step: ${s}\n`);

(async () => {
  const admin = new ServiceBusAdministrationClient(process.env.SB_ADMIN_CONNECTION_STRING);
  const out = {};
  step("namespace");
  out.namespace = (await admin.getNamespaceProperties()).messagingSku;
  step("createQueue");
  const q = await admin.createQueue("sdk-orders", { lockDuration: "PT20S", maxDeliveryCount: 5, defaultMessageTimeToLive: "P1D" });
  out.queue = { name: q.name, lockDuration: q.lockDuration, maxDeliveryCount: q.maxDeliveryCount, ttl: q.defaultMessageTimeToLive };
  try {
    await admin.createQueue("sdk-orders");
    out.duplicate = "created twice";
  } catch (e) {
    out.duplicate = e.code;
  }
  out.exists = await admin.queueExists("sdk-orders");
  out.missing = await admin.queueExists("no-such-queue");
  step("updateQueue");
  const current = await admin.getQueue("sdk-orders");
  current.maxDeliveryCount = 9;
  out.updated = (await admin.updateQueue(current)).maxDeliveryCount;
  step("listQueues");
  out.queues = [];
  for await (const x of admin.listQueues()) out.queues.push(x.name);
  try {
    await admin.createQueue("sessions", { requiresSession: true });
    out.sessions = "created";
  } catch (e) {
    out.sessions = `${e.statusCode} ${e.message}`;
  }
  step("topic, subscription, rules");
  await admin.createTopic("sdk-events");
  await admin.createSubscription("sdk-events", "filtered", {
    defaultRuleOptions: { name: "$Default", filter: { correlationId: "c-1" } },
  });
  await admin.createRule("sdk-events", "filtered", "by-subject", { sqlExpression: "sys.Label = 'invoice'" });
  await admin.createRule("sdk-events", "filtered", "by-prop", { applicationProperties: { kind: "urgent" } });
  const rules = [];
  for await (const r of admin.listRules("sdk-events", "filtered")) rules.push({ name: r.name, filter: r.filter });
  out.rules = rules;
  out.rule = (await admin.getRule("sdk-events", "filtered", "by-subject")).filter;
  await admin.deleteRule("sdk-events", "filtered", "by-prop");
  out.rulesAfterDelete = [];
  for await (const r of admin.listRules("sdk-events", "filtered")) out.rulesAfterDelete.push(r.name);
  out.subscriptions = [];
  for await (const s of admin.listSubscriptions("sdk-events")) out.subscriptions.push(s.subscriptionName);
  step("get, update, exists for topics, subscriptions, rules");
  const topic = await admin.getTopic("sdk-events");
  topic.maxSizeInMegabytes = 2048;
  out.topicUpdated = (await admin.updateTopic(topic)).maxSizeInMegabytes;
  out.topics = [];
  for await (const t of admin.listTopics()) out.topics.push(t.name);
  out.topicExists = await admin.topicExists("sdk-events");
  const sub = await admin.getSubscription("sdk-events", "filtered");
  sub.maxDeliveryCount = 3;
  sub.lockDuration = "PT50S";
  const subUpdated = await admin.updateSubscription(sub);
  out.subscriptionUpdated = { maxDeliveryCount: subUpdated.maxDeliveryCount, lockDuration: subUpdated.lockDuration };
  out.subscriptionExists = await admin.subscriptionExists("sdk-events", "filtered");
  const rule = await admin.getRule("sdk-events", "filtered", "by-subject");
  rule.filter = { sqlExpression: "sys.Label = 'invoice' AND region = 'eu'" };
  out.ruleUpdated = (await admin.updateRule("sdk-events", "filtered", rule)).filter.sqlExpression;
  rule.filter = { sqlExpression: "sys.Label = 'invoice'" };
  await admin.updateRule("sdk-events", "filtered", rule);
  out.ruleExists = await admin.ruleExists("sdk-events", "filtered", "by-subject");
  step("messages over AMQP on the runtime entities");
  const client = new ServiceBusClient(process.env.SB_CONNECTION_STRING);
  const sender = client.createSender("sdk-orders");
  await sender.sendMessages([{ body: "a1" }, { body: "a2" }]);
  const rt = await admin.getQueueRuntimeProperties("sdk-orders");
  out.activeCount = rt.activeMessageCount;
  const receiver = client.createReceiver("sdk-orders");
  const got = await receiver.receiveMessages(2, { maxWaitTimeInMs: 5000 });
  for (const m of got) await receiver.completeMessage(m);
  out.received = got.map((m) => m.body);
  const tsender = client.createSender("sdk-events");
  await tsender.sendMessages([
    { body: "no", subject: "other" },
    { body: "yes-corr", correlationId: "c-1" },
    { body: "yes-sql", subject: "invoice" },
  ]);
  const subRt = await admin.getSubscriptionRuntimeProperties("sdk-events", "filtered");
  out.subscriptionActive = subRt.activeMessageCount;
  const sr = client.createReceiver("sdk-events", "filtered", { receiveMode: "receiveAndDelete" });
  out.filtered = (await sr.receiveMessages(5, { maxWaitTimeInMs: 3000 })).map((m) => m.body).sort();
  await client.close();
  step("delete");
  await admin.deleteSubscription("sdk-events", "filtered");
  await admin.deleteTopic("sdk-events");
  await admin.deleteQueue("sdk-orders");
  try {
    await admin.getQueue("sdk-orders");
    out.afterDelete = "still there";
  } catch (e) {
    out.afterDelete = e.code;
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
