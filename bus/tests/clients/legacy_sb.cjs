// npm azure-sb 0.11.2 (Microsoft's REST-era Service Bus library) against weft's bus, for
// bus/tests/legacy_clients.rs. Sends with custom properties and BrokerProperties as the library writes them
// (TimeToLive as a string), receives from a queue and from a filtered subscription, and prints what the
// library reports as JSON on the last line. SB_CONNECTION_STRING: Endpoint=http://127.0.0.1:PORT/;…
"use strict";
const azure = require("azure-sb");
const sb = azure.createServiceBusService(process.env.SB_CONNECTION_STRING);
const call = (method, ...args) =>
  new Promise((resolve, reject) =>
    sb[method](...args, (err, result) => (err ? reject(err) : resolve(result))));
(async () => {
  await call("sendQueueMessage", "legacy", {
    body: "hello",
    customProperties: { Priority: "High", Attempt: 3 },
    brokerProperties: { Label: "L1", TimeToLive: "120" },
  });
  const m = await call("receiveQueueMessage", "legacy", { isPeekLock: false, timeoutIntervalInS: 5 });
  await call("sendTopicMessage", "events", {
    body: "for accounts",
    customProperties: { EntityLogicalName: "account" },
  });
  const s = await call("receiveSubscriptionMessage", "events", "accounts", {
    isPeekLock: false,
    timeoutIntervalInS: 5,
  });
  const seen = (msg) => ({
    body: msg.body,
    label: msg.brokerProperties.Label,
    timeToLive: msg.brokerProperties.TimeToLive,
    // null stands for a value the library could not type (NaN), which JSON cannot carry.
    customProperties: Object.fromEntries(
      Object.entries(msg.customProperties || {}).map(([k, v]) => [k, Number.isNaN(v) ? null : v])),
    customPropertyNames: Object.keys(msg.customProperties || {}),
  });
  console.log(JSON.stringify({ queue: seen(m), subscription: seen(s) }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
