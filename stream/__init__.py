"""The stream side of LiveCue: the pure decision core (:mod:`stream.core`), the playbook, and the
worker that runs it on Kafka (Faust app, topics, tables, thin agents)."""
