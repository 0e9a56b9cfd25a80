"""PostgreSQL implementations of the gateway's stores (psycopg 3, plain SQL).

One database (or one schema in it) holds one jurisdiction's state; several
``gateway serve`` replicas of that jurisdiction share it. ``db`` owns the pool,
error translation and migrations; each other module owns one store.
"""
