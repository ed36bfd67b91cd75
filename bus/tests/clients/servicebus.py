"""Drives azure-servicebus (7.15.0, installed by install.sh) against weft's bus over AMQP.

Usage: python3 servicebus.py SCENARIO  (connection string in SB_CONNECTION_STRING)
Prints one JSON object with what the SDK saw; amqp/tests/sdk.rs checks it. Any SDK error exits 1.
"""
import datetime
import json
import os
import sys
import time

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue

CS = os.environ["SB_CONNECTION_STRING"]
if os.environ.get("SB_DEBUG"):  # frame-level logging on stderr, for diagnosing a failing scenario
    import logging

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


def body(m):
    return b"".join(m.body).decode("utf-8")


def props(m):
    app = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (m.application_properties or {}).items()
    }
    return {
        "body": body(m),
        "subject": m.subject,
        "messageId": m.message_id,
        "correlationId": m.correlation_id,
        "applicationProperties": app,
        "deliveryCount": m.delivery_count,
        "sequenceNumber": m.sequence_number,
        "deadLetterReason": m.dead_letter_reason,
        "deadLetterErrorDescription": m.dead_letter_error_description,
        "state": int(m.state) if m.state is not None else None,
    }


def peeked(msgs):
    return [{"body": body(m), "sequenceNumber": m.sequence_number, "state": int(m.state)} for m in msgs]


def defer(client):
    """Deferral: defer_message, an ordinary receive without it, a peek showing it deferred,
    receive_deferred_messages, abandon (still deferred), again, complete; an unknown sequence number."""
    out = {}
    with client.get_queue_sender("orders") as sender, client.get_queue_receiver("orders", max_wait_time=5) as receiver:
        sender.send_messages(ServiceBusMessage("py-defer", application_properties={"kind": "deferred", "n": 5}))
        sender.send_messages(ServiceBusMessage("py-after"))
        [first] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        seq = first.sequence_number
        receiver.defer_message(first)
        ordinary = receiver.receive_messages(max_message_count=2, max_wait_time=2)
        out["ordinary"] = [body(m) for m in ordinary]
        for m in ordinary:
            receiver.complete_message(m)
        out["peeked"] = peeked(receiver.peek_messages(10, sequence_number=seq))
        [m] = receiver.receive_deferred_messages([seq])
        out["received"] = props(m)
        out["hasLockToken"] = m.lock_token is not None
        receiver.abandon_message(m)
        out["afterAbandon"] = peeked(receiver.peek_messages(1, sequence_number=seq))
        [m] = receiver.receive_deferred_messages(seq)
        out["again"] = props(m)
        receiver.complete_message(m)
        out["afterComplete"] = peeked(receiver.peek_messages(10, sequence_number=seq))
        try:
            receiver.receive_deferred_messages([987654321])
            out["unknown"] = "no error"
        except Exception as e:  # the SDK's error type is what the test checks
            out["unknown"] = type(e).__name__
    return out


def lifecycle(client):
    out = {}
    with client.get_queue_sender("orders") as sender, client.get_queue_receiver("orders", max_wait_time=5) as receiver:
        sender.send_messages(ServiceBusMessage("one", subject="s1", application_properties={"n": 1}))
        batch = sender.create_message_batch()
        batch.add_message(ServiceBusMessage("two"))
        batch.add_message(ServiceBusMessage("three"))
        sender.send_messages(batch)
        out["peeked"] = [body(m) for m in receiver.peek_messages(3)]
        msgs = []
        while len(msgs) < 3:
            got = receiver.receive_messages(max_message_count=3 - len(msgs), max_wait_time=5)
            if not got:
                break
            msgs.extend(got)
        out["received"] = [props(m) for m in msgs]
        before = msgs[0].locked_until_utc
        time.sleep(1.1)
        renewed = receiver.renew_message_lock(msgs[0])
        out["renewExtended"] = renewed > before
        receiver.complete_message(msgs[0])
        receiver.abandon_message(msgs[1])
        receiver.dead_letter_message(msgs[2], reason="bad-order", error_description="no customer")
        again = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        out["again"] = [props(m) for m in again]
        for m in again:
            receiver.complete_message(m)
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        seqs = sender.schedule_messages(ServiceBusMessage("later"), when)
        out["scheduled"] = list(seqs)
        sender.cancel_scheduled_messages(seqs)
        out["afterCancel"] = [body(m) for m in receiver.peek_messages(10, sequence_number=seqs[0])]
    with client.get_queue_receiver(
        "orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=5
    ) as dlq:
        out["deadLettered"] = [props(m) for m in dlq.receive_messages(max_message_count=1, max_wait_time=5)]
    return out


def receive_rest(client):
    with client.get_queue_receiver("orders", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=5) as r:
        return {"received": [props(m) for m in r.receive_messages(max_message_count=1, max_wait_time=5)]}


def send_for_rest(client):
    with client.get_queue_sender("orders") as s:
        s.send_messages(
            ServiceBusMessage(
                "from-python",
                subject="Update",
                message_id="py-1",
                correlation_id="corr-py",
                application_properties={"EntityLogicalName": "contact", "Attempt": 3, "Ok": True},
            )
        )
    return {"sent": True}


SCENARIOS = {"lifecycle": lifecycle, "receive-rest": receive_rest, "send-for-rest": send_for_rest, "defer": defer}

if __name__ == "__main__":
    with ServiceBusClient.from_connection_string(CS, logging_enable=bool(os.environ.get("SB_DEBUG"))) as c:
        result = SCENARIOS[sys.argv[1]](c)
    print(json.dumps(result, default=str))
