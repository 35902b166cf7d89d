"""Names the processes find each other by: actor names, consumer groups, shared limits.

One module, imported by the actors, runtime, the Serve app and the UI alike (it imports
nothing), so a name is spelled once and no caller loads an actor module for a constant.
"""

from __future__ import annotations

from typing import Final

# named actors, all in the Settings.namespace namespace
BROKER: Final = "tg_broker"
DATABASE: Final = "tg_database"
CONFIG: Final = "tg_config"
SCHEDULER: Final = "tg_scheduler"
LIMITER: Final = "tg_rate_limiter"
POOL: Final = "tg_engine_pool"
ENGINE_PREFIX: Final = "tg_engine_"  # SyncEngine i is named ENGINE_PREFIX + str(i)

SERVE_APP: Final = "turbo_giggle"  # the Ray Serve application
DB_RESOURCE: Final = "db"  # custom resource declared only on the node that holds the DuckDB file

# consumer groups on the broker's topics
SCHEDULER_GROUP: Final = "scheduler"  # on `config`, `status` and `commands`
SCHEDULER_LEASE_GROUP: Final = "scheduler-leases"  # on `status`: heartbeats renew leases
DATABASE_GROUP: Final = "database"  # on `status` (-> tg.run_logs), `commands` (-> tg.commands)
CONFIG_GROUP: Final = "config"  # the ConfigManager's, on `commands`
POOL_GROUP: Final = "pool"  # the EnginePool's, on `commands`
ENGINE_WORK_GROUP: Final = "engines"  # the engines' shared group on `triggers`
CLI_GROUP: Final = "cli"  # `tg run` following its run on `status`

MAX_ENGINES: Final = 256  # the most SyncEngines a pool runs (API, CLI and UI refuse more)
