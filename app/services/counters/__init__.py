"""Keep the report counters (`contact_stats`, `group_counts`, `campaign_hours`:
app/models/stats.py) in step with openings, clicks, pixels and contacts.

One owner, so that no write path can forget them: the services never call the counters.
- session.py registers Session events on the app's sessionmaker (app/db.make_sessionmaker: the
  API, the CLI, the loaders, the tests' factories): every flush and every ORM statement run
  through a session moves the counters by what it changes, in the same transaction (objects
  added, edited, moved or deleted, including the rows the database removes by ON DELETE
  CASCADE; bulk INSERT/UPDATE/DELETE statements; a statement it cannot follow is refused).
- Core writers, which no Session event sees, go through the same owner with one intent-level
  call each: `add_events` (the tracking ingest: increments and "earlier first opening" updates,
  computed by the database from the rows just inserted; commutative, so concurrent workers need
  no coordination beyond the row locks) and `delete_rows` (the retention purge).

The owner's steps: before a change, while the rows exist, take what goes or moves off the
counters (`forget_contacts`: a deleted contact's row off its group's; `forget_hours`: the
hours of the rows deleted, read with a locking read); after it, `refresh_contacts` recomputes
the touched contacts' rows from the source tables (an INSERT ... SELECT: on MariaDB it reads the
latest committed rows under shared locks, so it cannot miss an opening a worker commits
meanwhile) and `count_hours` adds the rows added. A group's row moves by the difference between
its contacts' rows after and before (read with locking reads, so a worker committing meanwhile
is either wholly before or wholly after). Row locks are always taken in the same order:
contacts, groups, hours.
`rebuild` recomputes a campaign (or everything) from scratch: migrations, seeding, repairs.
The modules follow the tables: contacts.py, groups.py, hours.py; events.py is the ingest path,
session.py the owner, rebuild.py the recompute from scratch.
"""

from app.services.counters.contacts import forget_contacts, refresh_contacts
from app.services.counters.events import add_events
from app.services.counters.groups import GROUP_COUNTERS
from app.services.counters.hours import count_hours, forget_hours
from app.services.counters.rebuild import rebuild
from app.services.counters.session import delete_rows, install

__all__ = [
    "GROUP_COUNTERS",
    "add_events",
    "count_hours",
    "delete_rows",
    "forget_contacts",
    "forget_hours",
    "install",
    "rebuild",
    "refresh_contacts",
]
