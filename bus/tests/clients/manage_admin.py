# PyPI azure-servicebus 7.15.0's ServiceBusAdministrationClient (always https://{namespace}/…) against weft's
# bus over HTTPS (development CA trusted through REQUESTS_CA_BUNDLE, a public requests option), then sends and
# receives on the queue it created with the same package's ServiceBusClient over AMQP.
# Env: SB_ADMIN_CONNECTION_STRING (Endpoint=sb://localhost:HTTPS_PORT/;…), SB_CONNECTION_STRING (the
# emulator-style AMQP one). Prints one JSON object; errors exit 1.
import json
import os
import sys

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient, SqlRuleFilter


def step(s):
    print(f"step: {s}", file=sys.stderr)


admin = ServiceBusAdministrationClient.from_connection_string(os.environ["SB_ADMIN_CONNECTION_STRING"])
out = {}
step("create_queue")
q = admin.create_queue("py-orders", lock_duration="PT20S", max_delivery_count=5)
out["queue"] = {"name": q.name, "lock_s": q.lock_duration.total_seconds(), "max_delivery_count": q.max_delivery_count}
try:
    admin.create_queue("py-orders")
    out["duplicate"] = "created twice"
except ResourceExistsError:
    out["duplicate"] = "ResourceExistsError"
step("update_queue")
props = admin.get_queue("py-orders")
props.max_delivery_count = 9
admin.update_queue(props)
out["updated"] = admin.get_queue("py-orders").max_delivery_count
out["queues"] = [x.name for x in admin.list_queues()]
step("topic, subscription, rule")
admin.create_topic("py-events")
admin.create_subscription("py-events", "all")
admin.create_rule("py-events", "all", "by-label", filter=SqlRuleFilter("sys.Label = 'invoice'"))
out["rules"] = sorted(r.name for r in admin.list_rules("py-events", "all"))
out["subscriptions"] = [s.name for s in admin.list_subscriptions("py-events")]
step("messages over AMQP")
with ServiceBusClient.from_connection_string(os.environ["SB_CONNECTION_STRING"]) as client:
    with client.get_queue_sender("py-orders") as sender:
        sender.send_messages([ServiceBusMessage("p1"), ServiceBusMessage("p2")])
    out["active"] = admin.get_queue_runtime_properties("py-orders").active_message_count
    got = []
    with client.get_queue_receiver("py-orders", max_wait_time=5) as receiver:
        for _ in range(5):
            batch = receiver.receive_messages(max_message_count=2, max_wait_time=5)
            for m in batch:
                receiver.complete_message(m)
            got.extend(str(m) for m in batch)
            if len(got) >= 2:
                break
    out["received"] = sorted(got)
step("delete")
admin.delete_queue("py-orders")
try:
    admin.get_queue("py-orders")
    out["after_delete"] = "still there"
except ResourceNotFoundError:
    out["after_delete"] = "ResourceNotFoundError"
print(json.dumps(out))
