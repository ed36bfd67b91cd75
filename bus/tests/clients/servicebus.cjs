// Drives @azure/service-bus (7.9.5, installed by install.sh) against weft's bus over AMQP.
// Usage: node servicebus.cjs SCENARIO  (connection string in SB_CONNECTION_STRING)
// Prints one JSON object with what the SDK saw; amqp/tests/sdk.rs checks it. Any SDK error exits 1.
"use strict";
const { ServiceBusClient } = require("@azure/service-bus");
// The SDK's sequence numbers are `long` Longs (installed with @azure/service-bus as its dependency).
const Long = require("long");

const cs = process.env.SB_CONNECTION_STRING;
// Progress on stderr, shown by the test when the script fails or hangs.
const step = (s) => process.stderr.write(`step: ${s}\n`);
const wait = { maxWaitTimeInMs: 5000 };

// A body the SDK could not parse as JSON (a REST sender's plain bytes) arrives as a Buffer: shown as text.
const text = (b) => (Buffer.isBuffer(b) ? b.toString("utf8") : b);

function props(m) {
  return {
    body: text(m.body),
    subject: m.subject,
    messageId: m.messageId,
    correlationId: m.correlationId,
    applicationProperties: m.applicationProperties,
    deliveryCount: m.deliveryCount,
    sequenceNumber: m.sequenceNumber === undefined ? undefined : Number(m.sequenceNumber),
    lockToken: m.lockToken,
    deadLetterReason: m.deadLetterReason,
    deadLetterErrorDescription: m.deadLetterErrorDescription,
    state: m.state,
  };
}

// What a peek shows: body, sequence number and state.
const peeked = (msgs) => msgs.map((m) => ({ body: text(m.body), sequenceNumber: Number(m.sequenceNumber), state: m.state }));

const scenarios = {
  // send (single and batch), peek, receive peek-lock, renew, complete, abandon, dead-letter, schedule, cancel
  async lifecycle(client) {
    const out = {};
    const sender = client.createSender("orders");
    await sender.sendMessages({ body: "one", subject: "s1", applicationProperties: { n: 1 } });
    const batch = await sender.createMessageBatch();
    batch.tryAddMessage({ body: "two" });
    batch.tryAddMessage({ body: "three" });
    await sender.sendMessages(batch);
    const receiver = client.createReceiver("orders");
    out.peeked = (await receiver.peekMessages(3)).map((m) => m.body);
    const msgs = await receiver.receiveMessages(3, wait);
    out.received = msgs.map(props);
    const before = msgs[0].lockedUntilUtc.getTime();
    await new Promise((r) => setTimeout(r, 1100));
    const renewed = await receiver.renewMessageLock(msgs[0]);
    out.renewExtended = renewed.getTime() > before;
    step("renewed");
    await receiver.completeMessage(msgs[0]);
    step("completed");
    await receiver.abandonMessage(msgs[1]);
    step("abandoned");
    await receiver.deadLetterMessage(msgs[2], {
      deadLetterReason: "bad-order",
      deadLetterErrorDescription: "no customer",
    });
    step("dead-lettered");
    const again = await receiver.receiveMessages(1, wait);
    step("received again");
    out.again = again.map(props);
    for (const m of again) await receiver.completeMessage(m);
    const dlq = client.createReceiver("orders", {
      subQueueType: "deadLetter",
      receiveMode: "receiveAndDelete",
    });
    out.deadLettered = (await dlq.receiveMessages(1, wait)).map(props);
    step("read the dead-letter queue");
    const seqs = await sender.scheduleMessages({ body: "later" }, new Date(Date.now() + 3600_000));
    out.scheduled = seqs.map(Number);
    step("scheduled");
    await sender.cancelScheduledMessages(seqs);
    out.afterCancel = (await receiver.peekMessages(10, { fromSequenceNumber: seqs[0] })).map((m) => m.body);
    return out;
  },
  // Deferral, part 1: the head of `orders` (sent over REST by the test) is deferred; an ordinary receive
  // gets the next message only; a peek shows the deferred one. The bus restarts after this.
  async defer(client) {
    const out = {};
    const sender = client.createSender("orders");
    await sender.sendMessages({ body: "after", subject: "after" });
    const receiver = client.createReceiver("orders");
    const [first] = await receiver.receiveMessages(1, wait);
    out.deferred = props(first);
    // Properties to modify travel in the `modified` outcome and become application properties.
    await receiver.deferMessage(first, { deferredBy: "node", Depth: 3 });
    step("deferred");
    const ordinary = await receiver.receiveMessages(2, { maxWaitTimeInMs: 2000 });
    out.ordinary = ordinary.map((m) => m.body);
    for (const m of ordinary) await receiver.completeMessage(m);
    step("ordinary receive done");
    out.peeked = peeked(await receiver.peekMessages(10, { fromSequenceNumber: first.sequenceNumber }));
    return out;
  },
  // Settled before confirmed: a peek sent right after each complete, defer or abandon already sees it
  // applied (repeated, as a race shows only now and then). An abandoned message is received again and
  // completed, so each round's receive gets that round's message.
  async "settle-then-peek"(client) {
    const sender = client.createSender("orders");
    const receiver = client.createReceiver("orders");
    const seen = [];
    for (let i = 0; i < 30; i++) {
      await sender.sendMessages({ body: `m${i}` });
      const [m] = await receiver.receiveMessages(1, wait);
      const how = ["complete", "defer", "abandon"][i % 3];
      if (how === "complete") await receiver.completeMessage(m);
      else if (how === "defer") await receiver.deferMessage(m);
      else await receiver.abandonMessage(m);
      const after = await receiver.peekMessages(1, { fromSequenceNumber: m.sequenceNumber });
      seen.push({ how, body: m.body, sequenceNumber: Number(m.sequenceNumber), peeked: peeked(after) });
      if (how === "abandon") {
        const [again] = await receiver.receiveMessages(1, wait);
        await receiver.completeMessage(again);
      }
    }
    return { seen };
  },
  // Deferral, part 2 (after a restart; DEFERRED_SEQ from part 1): receive by sequence number, abandon (it
  // stays deferred), again, renew, dead-letter; a second message deferred, received by sequence number and
  // completed; an unknown sequence number.
  async "receive-deferred"(client) {
    const out = {};
    const seq = Long.fromString(process.env.DEFERRED_SEQ);
    const receiver = client.createReceiver("orders");
    const [m] = await receiver.receiveDeferredMessages([seq]);
    out.received = props(m);
    out.lockedUntil = m.lockedUntilUtc ? m.lockedUntilUtc.getTime() : null;
    // Settled over $management (update-disposition), with properties to modify.
    await receiver.abandonMessage(m, { abandoned: true });
    step("abandoned");
    out.afterAbandon = peeked(await receiver.peekMessages(1, { fromSequenceNumber: seq }));
    out.ordinary = (await receiver.receiveMessages(1, { maxWaitTimeInMs: 1000 })).map((x) => x.body);
    const [again] = await receiver.receiveDeferredMessages(seq);
    out.again = props(again);
    const before = again.lockedUntilUtc.getTime();
    await new Promise((r) => setTimeout(r, 1100));
    out.renewExtended = (await receiver.renewMessageLock(again)).getTime() > before;
    await receiver.deadLetterMessage(again, { deadLetterReason: "gave-up", deadLetterErrorDescription: "deferred twice" });
    step("dead-lettered");
    const dlq = client.createReceiver("orders", { subQueueType: "deadLetter", receiveMode: "receiveAndDelete" });
    out.deadLettered = (await dlq.receiveMessages(1, wait)).map(props);

    const sender = client.createSender("orders");
    await sender.sendMessages({ body: "complete-me" });
    const [c] = await receiver.receiveMessages(1, wait);
    await receiver.deferMessage(c);
    const [cd] = await receiver.receiveDeferredMessages(c.sequenceNumber);
    out.completed = props(cd);
    await receiver.completeMessage(cd);
    step("completed");
    out.afterComplete = peeked(await receiver.peekMessages(10, { fromSequenceNumber: seq }));

    try {
      await receiver.receiveDeferredMessages(Long.fromNumber(987654321));
      out.unknown = "no error";
    } catch (e) {
      out.unknown = { name: e.name, code: e.code };
    }
    return out;
  },
  // receive what REST sent, receive-and-delete
  async "receive-rest"(client) {
    const r = client.createReceiver("orders", { receiveMode: "receiveAndDelete" });
    return { received: (await r.receiveMessages(1, wait)).map(props) };
  },
  // send for REST to receive
  async "send-for-rest"(client) {
    const s = client.createSender("orders");
    await s.sendMessages({
      body: { name: "from-node" },
      subject: "Update",
      messageId: "node-1",
      correlationId: "corr-node",
      applicationProperties: { EntityLogicalName: "contact", Attempt: 3, Ok: true },
    });
    return { sent: true };
  },
};

async function main() {
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario) throw new Error(`unknown scenario ${name}`);
  const client = new ServiceBusClient(cs);
  try {
    const out = await scenario(client);
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await client.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
  // core-amqp's retry gives up with an AggregateError: what each attempt failed with.
  for (const inner of (e && e.errors) || []) process.stderr.write(`attempt: ${inner && inner.stack ? inner.stack : inner}\n`);
  process.exit(1);
});
