"""PyPI azure-servicebus 0.21.1 (Microsoft's REST-era Service Bus library) against weft's bus, for
bus/tests/legacy_clients.rs. Sends with custom properties and BrokerProperties as the library writes them
(numbers as strings: "TimeToLive": "120"), receives from a queue and from a filtered subscription, and prints
what the library reports as JSON on the last line. BUS_HOST=127.0.0.1:PORT, SB_KEY_NAME, SB_KEY."""
import json
import math
import os

from azure.servicebus import Message, ServiceBusService

sbs = ServiceBusService(
    service_namespace=os.environ["BUS_HOST"],
    host_base="",
    shared_access_key_name=os.environ["SB_KEY_NAME"],
    shared_access_key_value=os.environ["SB_KEY"],
)
# The library speaks to *.servicebus.windows.net on port 443 only: the local bus is plain HTTP on its own
# port, and the token's audience (built from the same URI) must name that host without an extra ":80".
sbs._httpclient.protocol = "http"
sbs._httpclient.get_uri = lambda request: "http://" + request.host + request.path

sbs.send_queue_message(
    "legacy",
    Message(b"hello", custom_properties={"Priority": "High", "Attempt": 3},
            broker_properties={"Label": "L1", "TimeToLive": 120}),
)
m = sbs.receive_queue_message("legacy", peek_lock=False, timeout=5)
sbs.send_topic_message("events", Message(b"for accounts", custom_properties={"EntityLogicalName": "account"}))
s = sbs.receive_subscription_message("events", "accounts", peek_lock=False, timeout=5)


def seen(msg):
    props = {}
    for k, v in (msg.custom_properties or {}).items():
        # None stands for a value the library could not type (NaN), which JSON cannot carry.
        props[k.lower()] = None if isinstance(v, float) and math.isnan(v) else (
            v if isinstance(v, (str, int, float, bool)) else str(v))
    body = msg.body.decode() if isinstance(msg.body, bytes) else msg.body
    bp = msg.broker_properties or {}
    return {"body": body, "label": bp.get("Label"), "timeToLive": bp.get("TimeToLive"),
            "customProperties": props, "customPropertyNames": sorted(props)}


print(json.dumps({"queue": seen(m), "subscription": seen(s)}))
