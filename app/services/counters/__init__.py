"""Keep the report counters (`contact_stats`, `group_counts`, `campaign_hours`:
app/models/stats.py) in step with openings, clicks, pixels and contacts.

Three ways in, all in the caller's transaction:
- `add_events`: the tracking ingest adds what a batch inserted (increments and "earlier first
  opening" updates, computed by the database from the rows just inserted; commutative, so
  concurrent workers need no coordination beyond the row locks, always taken in the same
  order: contacts, groups, hours);
- `refresh_contacts`: any other change recomputes the touched contacts' rows from the source
  tables (an INSERT ... SELECT: on MariaDB it reads the latest committed rows under shared locks,
  so it cannot miss an opening a worker commits meanwhile); `forget_contacts` before contacts
  are deleted;
- `forget_hours` before rows are deleted, `count_hours` after rows are added by hand: the hourly
  counters move by what those rows weigh (read with a locking read).
A group's row moves by the difference between its contacts' rows after and before (read with
locking reads, so a worker committing meanwhile is either wholly before or wholly after).
`rebuild` recomputes a campaign (or everything) from scratch: migrations, seeding, repairs.
The modules follow the tables: contacts.py, groups.py, hours.py; events.py is the ingest path,
rebuild.py the recompute from scratch.
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
