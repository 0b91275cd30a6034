"""MQTT devices and NATS services on one broker (pip install nats-py paho-mqtt):

- a sensor publishes `sensors/kitchen/temp` over MQTT (QoS 1); a NATS service subscribed to
  `sensors.*.temp` receives it (MQTT `/` is NATS `.`);
- a NATS client sends a command on `devices.valve1.cmd`; the MQTT device subscribed to
  `devices/valve1/cmd` receives it.

Against a running broker: `edgebus -c examples/sensors.conf`, then
`python examples/mqtt_bridge.py --mqtt mqtt://127.0.0.1:1883`.
"""

import asyncio
import queue
from urllib.parse import urlsplit

import nats
import paho.mqtt.client as mqtt

from _common import server

CONFIG = "mqtt { port: -1 }\njetstream {}\n"  # the embedded broker; MQTT needs JetStream


def mqtt_client(url: str, client_id: str) -> mqtt.Client:
    u = urlsplit(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect(u.hostname, u.port or 1883)
    c.loop_start()
    return c


async def main(nats_url: str, mqtt_url: str) -> None:
    nc = await nats.connect(nats_url)
    readings = await nc.subscribe("sensors.*.temp")
    await nc.flush()

    sensor = mqtt_client(mqtt_url, "kitchen-sensor")
    sensor.publish("sensors/kitchen/temp", b"21.5", qos=1).wait_for_publish(5)
    msg = await readings.next_msg(timeout=5)
    print(f"NATS service got {msg.subject} = {msg.data.decode()}")

    commands: queue.Queue = queue.Queue()
    subscribed: queue.Queue = queue.Queue()
    valve = mqtt_client(mqtt_url, "valve1")
    valve.on_message = lambda c, u, m: commands.put((m.topic, m.payload))
    valve.on_subscribe = lambda c, u, mid, rc, props: subscribed.put(mid)
    valve.subscribe("devices/valve1/cmd", qos=1)
    await asyncio.to_thread(subscribed.get, True, 5)
    await nc.publish("devices.valve1.cmd", b"open")
    topic, payload = await asyncio.to_thread(commands.get, True, 5)
    print(f"MQTT device got {topic} = {payload.decode()}")

    for c in (sensor, valve):
        c.loop_stop()
        c.disconnect()
    await nc.close()


if __name__ == "__main__":
    with server(jetstream=True, config=CONFIG) as srv:
        asyncio.run(main(srv.client_url, srv.mqtt_url))
