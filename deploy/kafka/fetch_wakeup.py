"""Fetch wake-up on Tansu and on Apache Kafka: a consumer long-polls with fetch_max_wait_ms W;
the figure is the time from a send to its receipt. Run: .venv/bin/python deploy/kafka/fetch_wakeup.py
"""
import asyncio, statistics, sys, time
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from livecue.broker import EmbeddedBroker, create_topics
from livecue.kafka_cluster import KafkaCluster

async def measure(bootstrap, wait_ms):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0); await p.start()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=wait_ms)
    await c.start()
    tp = TopicPartition("live.chat", 0); c.assign([tp]); await c.seek_to_end(tp)
    lat = []
    for i in range(8):
        await asyncio.sleep(0.3 + 0.137 * i)
        t0 = time.monotonic()
        await p.send_and_wait("live.chat", b"x", partition=0)
        while True:
            got = await c.getmany(tp, timeout_ms=5000)
            if got.get(tp): break
        lat.append((time.monotonic() - t0) * 1000)
    await c.stop(); await p.stop()
    return statistics.median(lat), max(lat)

async def main():
    for name in ("tansu", "kafka"):
        b = EmbeddedBroker().start() if name == "tansu" else KafkaCluster().start()
        try:
            if name == "tansu": await create_topics(b.bootstrap, 4)
            else: await b.create_topics(4)
            for w in (20, 500, 1500):
                med, mx = await measure(b.bootstrap, w)
                print(f"{name}: fetch_max_wait_ms={w}: send->receive median {med:.0f} ms, max {mx:.0f} ms", flush=True)
        finally:
            b.stop()
asyncio.run(main())
