"""scand behind a load balancer: HAProxy's agent-check (docs/FARM.md).

``agent``: the pure answer (pool snapshot -> one line) and its tiny listener.
The PROXY protocol lives with the fronts (:mod:`scand.fronts.proxyproto`,
:mod:`scand.fronts.proxy_gate`); the Sentinel client with the cache
(:mod:`scand.cache.connect`).
"""
