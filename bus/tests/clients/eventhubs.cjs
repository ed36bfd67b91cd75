// Drives @azure/event-hubs (6.0.4, installed by install.sh) against weft's bus over AMQP.
// Usage: node eventhubs.cjs SCENARIO  (connection string in EH_CONNECTION_STRING, hub in EH_NAME,
// the partition key's partition in EH_KEY_PARTITION, the single event's in EH_SINGLE_PARTITION, the
// one the test filled over REST in EH_REST_PARTITION)
// Prints one JSON object with what the SDK saw; amqp/tests/sdk.rs checks it. Any SDK error exits 1.
"use strict";
const {
  EventHubProducerClient,
  EventHubConsumerClient,
  earliestEventPosition,
} = require("@azure/event-hubs");

const cs = process.env.EH_CONNECTION_STRING;
const hub = process.env.EH_NAME;
const keyPartition = process.env.EH_KEY_PARTITION;
const singlePartition = process.env.EH_SINGLE_PARTITION;
const restPartition = process.env.EH_REST_PARTITION;
// Progress on stderr, shown by the test when the script fails or hangs.
const step = (s) => process.stderr.write(`step: ${s}\n`);

function event(e) {
  return {
    body: typeof e.body === "string" ? e.body : Buffer.isBuffer(e.body) ? e.body.toString() : e.body,
    properties: e.properties,
    offset: String(e.offset),
    sequenceNumber: Number(e.sequenceNumber),
    partitionKey: e.partitionKey,
    enqueuedTimeUtc: e.enqueuedTimeUtc instanceof Date ? e.enqueuedTimeUtc.getTime() : null,
  };
}

// Reads partition `p` from `startPosition` until `count` events came (or 10 s passed).
async function read(p, startPosition, count) {
  const consumer = new EventHubConsumerClient("$Default", cs, hub);
  const got = [];
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, 10000);
      const sub = consumer.subscribe(
        p,
        {
          processEvents: async (events) => {
            got.push(...events.map(event));
            if (got.length >= count) {
              clearTimeout(timer);
              resolve();
            }
          },
          processError: async (err) => {
            clearTimeout(timer);
            reject(err);
          },
        },
        { startPosition, maxBatchSize: 10, maxWaitTimeInSeconds: 1 },
      );
      consumer._sub = sub;
    });
    await consumer._sub.close();
  } finally {
    await consumer.close();
  }
  return got;
}

function partitionProps(p) {
  return {
    partitionId: p.partitionId,
    eventHubName: p.eventHubName,
    beginningSequenceNumber: Number(p.beginningSequenceNumber),
    lastEnqueuedSequenceNumber: Number(p.lastEnqueuedSequenceNumber),
    lastEnqueuedOffset: String(p.lastEnqueuedOffset),
    lastEnqueuedOnUtc: p.lastEnqueuedOnUtc.getTime(),
    isEmpty: p.isEmpty,
  };
}

const scenarios = {
  // properties, a keyed batch, a single event to a partition, partition properties, and reads from
  // earliest, from a sequence number and from an offset, and what the test sent over REST.
  async roundtrip() {
    const out = {};
    const producer = new EventHubProducerClient(cs, hub);
    try {
      const props = await producer.getEventHubProperties();
      out.hub = { name: props.name, partitionIds: props.partitionIds, createdOn: props.createdOn.getTime() };
      step("properties");
      const batch = await producer.createBatch({ partitionKey: "order-42" });
      for (let i = 1; i <= 3; i++) {
        if (!batch.tryAdd({ body: `k${i}`, properties: { n: i, source: "node" } })) throw new Error("batch full");
      }
      await producer.sendBatch(batch);
      step("batch sent");
      await producer.sendBatch([{ body: "p2", properties: { kind: "single" }, messageId: "m-p2" }], {
        partitionId: singlePartition,
      });
      step("single sent");
      out.partitions = [];
      for (const id of props.partitionIds) {
        out.partitions.push(partitionProps(await producer.getPartitionProperties(id)));
      }
    } finally {
      await producer.close();
    }
    out.earliest = await read(keyPartition, earliestEventPosition, 3);
    step("read earliest");
    out.fromSequence = await read(keyPartition, { sequenceNumber: 1, isInclusive: true }, 2);
    out.fromOffset = await read(keyPartition, { offset: out.earliest[0].offset }, 2);
    out.rest = await read(restPartition, earliestEventPosition, 2);
    return out;
  },
};

(async () => {
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario) throw new Error(`unknown scenario ${name}`);
  const out = await scenario();
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
})().catch((e) => {
  process.stderr.write(`error: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
