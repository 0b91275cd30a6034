"""MQTT 3.1.1 sessions on top of the edgebus core, as nats-server's MQTT front-end runs them.

The wire codec lives in `edgebus.codec.mqtt` / `edgebus.codec.mqtt_topics`; the listener and the
per-connection driver in `edgebus.transport.mqtt` and `connection.py`. This package holds the
state that outlives a connection:

- `session.py`   one MQTT session: its subscriptions (core subscribers), QoS 1/2 tracking,
                 packet identifiers, redelivery;
- `manager.py`   the sessions, retained messages and takeover bookkeeping of one account;
- `retained.py`  retained messages: nats-server's record format and a subject index;
- `persist.py`   where state is kept: JetStream streams `$MQTT_sess` / `$MQTT_rmsgs` when
                 JetStream runs in the account, else message stores under `<store_dir>/mqtt/`.
"""
