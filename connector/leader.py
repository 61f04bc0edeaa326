"""One leader among the `connector run` replicas that share a PostgreSQL state (`state.url`).

    every lease_seconds / 3, each replica:
      leader   renew the lease row (same holder, same epoch); not renewed in time -> standby
      standby  lease fresh and someone else's          -> stay standby
               lease expired (or none)                 -> end the old holder's sessions, take the
                                                          advisory lock, bump the epoch: leader

The lease row (`leases`: holder, epoch, expires_at on the database's clock) is the authority; the
advisory lock on a connection of its own keeps two standbys from taking over at once. Fencing: a
leader writes every intent under its epoch (`PostgresStore._fence`), checks its lease before each
call (`check`), and judges the lease by its own monotonic clock as well, so a leader paused past
its lease (GC, SIGSTOP, a partition) wakes up as a standby and sends nothing more. A request
already on the wire when the lease ran out stays an intent: the new leader settles it as in doubt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from connector.errors import LeaseLost
from connector.store.postgres import LEADER_LOCK, PostgresStore, connect

log = logging.getLogger("connector.leader")
NOW = "extract(epoch from clock_timestamp())"


class Leadership:
    def __init__(self, store: PostgresStore, lease_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.role = "standby"
        self.epoch: int | None = None
        self._connection: Any = None  # holds LEADER_LOCK while leading
        self._valid_until = 0.0

    @property
    def interval(self) -> float:
        return self.lease_seconds / 3

    def valid(self) -> bool:
        return self.role == "leader" and self.clock() < self._valid_until

    def check(self) -> None:
        """Before each call: this replica still holds a live lease, or the pass stops."""
        if not self.valid():
            raise LeaseLost(f"this replica's lease (epoch {self.epoch}) ran out; no further call is sent")

    def step(self) -> str:
        """One renewal or one attempt to take over; returns the role after it."""
        try:
            if self.role == "leader":
                self._renew()
            else:
                self._try_to_lead()
        except Exception as exc:  # a database outage: a leader's local deadline still decides
            log.warning("lease %s failed: %s", "renewal" if self.role == "leader" else "check", type(exc).__name__)
            if self.role == "leader" and not self.valid():
                self._step_down("its lease could not be renewed in time")
        return self.role

    def close(self) -> None:
        if self.role == "leader":
            self._step_down("the service stops", release_lease=True)

    # -- the two roles ---------------------------------------------------------------------

    def _connection_for_lock(self) -> Any:
        if self._connection is None or self._connection.closed:
            self._connection = connect(self.store.url)
        return self._connection

    def _try_to_lead(self) -> None:
        connection = self._connection_for_lock()
        row = connection.execute(f"SELECT holder, expires_at > {NOW} FROM leases WHERE name = 'leader'").fetchone()
        if row is not None and row[1] and row[0] != self.store.holder:
            return
        if row is not None and not row[1] and row[0] != self.store.holder:
            ended = connection.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()", [row[0]]
            ).fetchone()[0]
            if ended:
                log.warning("the lease of %s ran out: ended its %d database session(s) before taking over", row[0], ended)
        if not connection.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK]).fetchone()[0]:
            return
        started = self.clock()
        taken = connection.execute(
            f"""INSERT INTO leases(name, holder, epoch, expires_at) VALUES ('leader', %s, 1, {NOW} + %s)
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1, expires_at = excluded.expires_at
                WHERE leases.expires_at <= {NOW} OR leases.holder = excluded.holder
                RETURNING epoch""",
            [self.store.holder, self.lease_seconds],
        ).fetchone()
        if taken is None:
            connection.execute("SELECT pg_advisory_unlock(%s)", [LEADER_LOCK])
            return
        self.epoch = int(taken[0])
        self.store.epoch = self.epoch
        self._valid_until = started + self.lease_seconds
        self.role = "leader"
        log.warning("this replica leads now (epoch %d, lease %g s)", self.epoch, self.lease_seconds)

    def _renew(self) -> None:
        started = self.clock()
        if started >= self._valid_until:
            self._step_down("its lease ran out before it was renewed (was the process paused?)")
            return
        renewed = (
            self._connection_for_lock()
            .execute(
                f"UPDATE leases SET expires_at = {NOW} + %s WHERE name = 'leader' AND holder = %s AND epoch = %s RETURNING epoch",
                [self.lease_seconds, self.store.holder, self.epoch],
            )
            .fetchone()
        )
        if renewed is None:
            self._step_down("another replica holds the lease now")
            return
        self._valid_until = started + self.lease_seconds

    def _step_down(self, why: str, *, release_lease: bool = False) -> None:
        log.warning("this replica stands by: %s", why)
        self.role = "standby"
        self.store.epoch = None
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            try:
                if release_lease:  # a clean stop hands over at once instead of after the lease
                    connection.execute(
                        f"UPDATE leases SET expires_at = {NOW} WHERE name = 'leader' AND holder = %s AND epoch = %s", [self.store.holder, self.epoch]
                    )
                connection.close()
            except Exception as exc:
                log.debug("closing the leader connection: %s", exc)
