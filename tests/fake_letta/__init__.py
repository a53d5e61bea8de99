"""A fake Letta 0.16.8 runs API, served over real HTTP on loopback.

Tests and benchmarks of the exporter talk to this server exactly as they would talk to a
real Letta server: real sockets, real HTTP/1.1 (keep-alive included), and JSON bodies
that are byte-compatible with what FastAPI emits for Letta 0.16.8 (compact separators,
the same key order, the same timestamp formats).  Every shape here was built from the
captured responses in ``/work/shared/fixtures/letta-0.16.8/`` and every behaviour from
``/work/shared/letta-runs-api.md`` (§ numbers below refer to that document).

Main points reproduced:

* the runs list with all its query parameters, its validation errors (422 with ``detail``
  as one *string*, 400 for an unknown ``statuses`` value) and its swapped cursors (§4.2);
  a ``"conventional"`` mode provides time-based cursors for comparison, a
  ``"relative"`` one cursors relative to the sort order (Letta Cloud's documentation);
  unknown cursors restart the list or answer 404 (``unknown_cursor``), and
  :meth:`FakeLetta.set_semantics` changes all that while serving;
* bursts of finished runs sharing the newest timestamp (:meth:`FakeLetta.finish_burst`);
* keyset paging on ``(created_at, id)``: exact on Postgres, and on SQLite the literal
  "cursor cut to whole seconds, compared as a string" bug of §4.5;
* ``total_duration_ns`` only in list results, only after the metrics transaction
  (``metrics_delay``), ``ttft_ns`` always null, ``completed_at`` set once (§5.3);
* late commits (a run appears with an old ``created_at``), deletes by agent cascade,
  arbitrary invalid list items, and HTTP-level faults (5xx, 429, timeouts, resets,
  truncated / garbage / endless / huge bodies) aimed by path prefix or regex;
* the enrichment reads: ``/usage`` over the 50 newest steps only, ``/steps`` with the
  generic list's cursors (§4.6; ``before`` is not the adjacent page),
  ``GET /v1/tools/{id}`` and ``GET /v1/steps/{id}/metrics`` with the real path
  validation (422) and NoResultFound (404) bodies;
* ground truth for tests: :meth:`FakeLetta.truth`, ``token_truth``, ``step_count_truth``
  and ``tool_truth``.

The ``letta-0.16.8`` profile (``semantics="letta-0.16.8"``, ``backend="postgres"``) is
checked against a real 0.16.8 server by ``tests/test_realserver_fake_parity.py``. The other
profiles (``"conventional"`` and ``"relative"`` cursors, the cloud's behaviour, the SQLite
backend) model servers that cannot be run here: nothing checks them against a real one.

Run it in-process::

    from tests.fake_letta.fake import FakeLetta

    with FakeLetta(semantics="letta-0.16.8", backend="postgres") as fake:
        run_id = fake.create_run("agent-...")
        httpx.get(fake.base_url + "/v1/runs/")

or as its own process (benchmarks)::

    python -m tests.fake_letta --port 0 --bulk 1000000

One module per job; each is tested by ``tests/test_fake_<module>.py``:

* ``fake``: :class:`~tests.fake_letta.fake.FakeLetta`, which starts and stops the server
  and puts the parts below together (they are mixins over one store and its lock);
* ``store`` (the runs table and its indexes), ``model`` (rows, steps, sort keys),
  ``shapes`` (the JSON bodies), ``wire`` (bytes, timestamps, ids), ``constants``;
* ``lifecycle`` (create, update, commit, delete runs), ``approvals``, ``workload``
  (bursts, bulk loads, raw items), ``steps`` (steps, traces, tools), ``truth``;
* ``cursors`` (the runs list under each cursor profile and backend), ``faults``;
* ``dispatch``, ``run_routes``, ``child_routes``, ``query``, ``responses`` (the HTTP
  side) and ``server`` (the socket server); ``__main__`` is the command line.
"""
