"""Drives azure-eventhub (5.15.1, installed by install.sh) against weft's bus over AMQP.

Usage: python3 eventhubs.py SCENARIO  (connection string in EH_CONNECTION_STRING, hub in EH_NAME, the
partition key's partition in EH_KEY_PARTITION, the single event's in EH_SINGLE_PARTITION, the one the
test filled over REST in EH_REST_PARTITION)
Prints one JSON object with what the SDK saw; amqp/tests/sdk.rs checks it. Any SDK error exits 1.
"""
import json
import os
import sys
import threading

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

CS = os.environ["EH_CONNECTION_STRING"]
HUB = os.environ["EH_NAME"]
KEY_PARTITION = os.environ["EH_KEY_PARTITION"]
SINGLE_PARTITION = os.environ["EH_SINGLE_PARTITION"]
REST_PARTITION = os.environ["EH_REST_PARTITION"]
if os.environ.get("EH_DEBUG"):  # frame-level logging on stderr, for diagnosing a failing scenario
    import logging

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


def step(s):
    print(f"step: {s}", file=sys.stderr, flush=True)


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def event(e):
    return {
        "body": e.body_as_str(),
        "properties": {text(k): text(v) for k, v in (e.properties or {}).items()},
        "offset": e.offset,
        "sequenceNumber": e.sequence_number,
        "partitionKey": text(e.partition_key),
        "enqueuedTimeUtc": int(e.enqueued_time.timestamp() * 1000) if e.enqueued_time else None,
    }


def read(partition, position, count, inclusive=False):
    """Reads `partition` from `position` until `count` events came (or 10 s passed)."""
    got = []
    enough = threading.Event()
    consumer = EventHubConsumerClient.from_connection_string(CS, consumer_group="$Default", eventhub_name=HUB)

    def on_batch(_ctx, events):
        got.extend(event(e) for e in events)
        if len(got) >= count:
            enough.set()

    errors = []

    def on_error(_ctx, err):
        errors.append(repr(err))
        enough.set()

    worker = threading.Thread(
        target=consumer.receive_batch,
        kwargs={
            "on_event_batch": on_batch,
            "on_error": on_error,
            "partition_id": partition,
            "starting_position": position,
            "starting_position_inclusive": inclusive,
            "max_batch_size": 10,
            "max_wait_time": 1,
        },
        daemon=True,
    )
    worker.start()
    enough.wait(10)
    consumer.close()
    worker.join(10)
    if errors:
        raise RuntimeError(f"consumer error: {errors}")
    return got


def partition_props(p):
    return {
        "partitionId": p["id"],
        "eventHubName": p["eventhub_name"],
        "beginningSequenceNumber": p["beginning_sequence_number"],
        "lastEnqueuedSequenceNumber": p["last_enqueued_sequence_number"],
        "lastEnqueuedOffset": p["last_enqueued_offset"],
        "lastEnqueuedOnUtc": int(p["last_enqueued_time_utc"].timestamp() * 1000),
        "isEmpty": p["is_empty"],
    }


def roundtrip():
    """Properties, a keyed batch, a single event to a partition, partition properties, and reads from
    earliest, from a sequence number and from an offset, and what the test sent over REST."""
    out = {}
    producer = EventHubProducerClient.from_connection_string(CS, eventhub_name=HUB)
    with producer:
        props = producer.get_eventhub_properties()
        out["hub"] = {
            "name": props["eventhub_name"],
            "partitionIds": props["partition_ids"],
            "createdOn": int(props["created_at"].timestamp() * 1000),
        }
        step("properties")
        batch = producer.create_batch(partition_key="order-42")
        for i in range(1, 4):
            e = EventData(f"k{i}")
            e.properties = {"n": i, "source": "python"}
            batch.add(e)
        producer.send_batch(batch)
        step("batch sent")
        single = EventData("p2")
        single.properties = {"kind": "single"}
        single.message_id = "m-p2"
        producer.send_event(single, partition_id=SINGLE_PARTITION)
        step("single sent")
        out["partitions"] = [partition_props(producer.get_partition_properties(p)) for p in props["partition_ids"]]
    out["earliest"] = read(KEY_PARTITION, "-1", 3)
    step("read earliest")
    out["fromSequence"] = read(KEY_PARTITION, 1, 2, inclusive=True)
    out["fromOffset"] = read(KEY_PARTITION, out["earliest"][0]["offset"], 2)
    out["rest"] = read(REST_PARTITION, "-1", 2)
    return out


SCENARIOS = {"roundtrip": roundtrip}

if __name__ == "__main__":
    result = SCENARIOS[sys.argv[1]]()
    print(json.dumps(result))
