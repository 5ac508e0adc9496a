"""The reads benchmark's CPU budget: the accounting on given samples (no processes),
the command-line classification, and the projection to the offered load."""

from __future__ import annotations

import pytest

from bench.cpu_budget import (
    Component,
    CpuBudgetSampler,
    CpuSample,
    budget,
    component_of,
    summary,
)


def s(pid: int, component: Component, cpu_s: float, created: float = 100.0) -> CpuSample:
    return CpuSample(pid=pid, created=created, component=component, cpu_s=cpu_s)


def keyed(*samples: CpuSample) -> dict[tuple[int, float], CpuSample]:
    return {x.key: x for x in samples}


def test_each_process_counts_its_last_minus_first_sample_and_components_add_up() -> None:
    first = keyed(
        s(10, Component.POSTGRES, 5.0),  # postmaster
        s(11, Component.POSTGRES, 1.0),  # a backend alive all along
        s(20, Component.API, 2.0),
        s(30, Component.PROCESSOR, 7.0, created=50.0),
        s(31, Component.PROCESSOR, 3.0, created=60.0),
    )
    last = keyed(
        s(10, Component.POSTGRES, 6.0),
        s(11, Component.POSTGRES, 9.0),
        s(12, Component.POSTGRES, 4.0),  # a backend born in the window: all of it
        s(20, Component.API, 32.0),
        s(30, Component.PROCESSOR, 27.0, created=50.0),
        s(31, Component.PROCESSOR, 13.0, created=60.0),
        s(40, Component.LOCUST, 15.0),  # Locust started in the window
    )
    out = budget(first, last, wall_s=20.0)
    assert {k: (v.cpu_s, v.cores, v.processes) for k, v in out.items()} == {
        "tap api": (30.0, 1.5, 1),
        "processor 1": (20.0, 1.0, 1),  # the earlier-started processor is number 1
        "locust (writers, readers, listeners)": (15.0, 0.75, 1),
        "postgresql (all backends)": (1.0 + 8.0 + 4.0, 13.0 / 20.0, 3),
        "processor 2": (10.0, 0.5, 1),
    }
    assert list(out) == sorted(out, key=lambda k: -out[k].cpu_s)  # biggest first


def test_a_reused_pid_is_another_process_and_a_backend_that_ended_keeps_its_last_sample() -> None:
    first = keyed(s(11, Component.POSTGRES, 1.0, created=1.0))
    # pid 11 ended after 3 s of CPU (its last sample stays); pid 11 again, a new backend.
    last = keyed(
        s(11, Component.POSTGRES, 4.0, created=1.0),
        s(11, Component.POSTGRES, 0.5, created=9.0),
    )
    out = budget(first, last, wall_s=10.0)
    assert out["postgresql (all backends)"].cpu_s == pytest.approx(3.5)
    assert out["postgresql (all backends)"].processes == 2


def test_summary_totals_saturation_and_projection() -> None:
    components = budget(
        {},
        keyed(
            s(1, Component.API, 10.0),
            s(2, Component.PROCESSOR, 8.0),
            s(3, Component.KINESALITE, 4.0),
            s(4, Component.POSTGRES, 6.0),
        ),
        wall_s=20.0,
    )  # API 0.5, processor 0.4, kinesalite 0.2, postgres 0.3 cores: 1.4 of 2
    doc = summary(components, 20.0, 2, write_scale=2.0, read_scale=4.0)
    assert doc["total_cores"] == pytest.approx(1.4)
    assert doc["saturated"] is False
    assert doc["projected_cores_at_offered_load"] == {
        "tap api": 2.0,  # reads: x4
        "processor 1": 0.8,  # writes: x2
        "postgresql (all backends)": 1.2,  # both: the larger, x4
        "kinesalite": 0.4,  # writes: x2
    }
    assert doc["projected_total_cores"] == pytest.approx(4.4)
    assert doc["fits_machine"] is False
    assert doc["components"]["tap api"] == {"cpu_s": 10.0, "cores": 0.5, "processes": 1}
    saturated = summary(components, 20.0, 1)
    assert saturated["saturated"] is True and "fits_machine" not in saturated
    with pytest.raises(ValueError, match="must last"):
        budget({}, {}, wall_s=0.0)


@pytest.mark.parametrize(
    ("name", "cmdline", "component"),
    [
        ("postgres", ["/usr/lib/postgresql/15/bin/postgres", "-D", "/tmp/pg"], Component.POSTGRES),
        ("postgres", ["postgres: tap_api tap 127.0.0.1(5555) idle"], Component.POSTGRES),
        ("redis-server", ["redis-server *:0"], Component.REDIS),
        (
            "node",
            ["node", "/w/local_pipeline/services/kinesalite_launcher.js"],
            Component.KINESALITE,
        ),
        ("python", ["/w/.venv/bin/python", "-m", "locust", "-f", "x.py"], Component.LOCUST),
        ("python", ["/w/.venv/bin/python", "-m", "processor"], Component.PROCESSOR),
        ("python", ["/w/.venv/bin/python", "-m", "tap_cli.main", "api"], Component.API),
        ("python", ["/w/.venv/bin/python", "-m", "moto.server", "-p", "1"], Component.MOTO),
        ("sh", ["sh", "-c", "true"], Component.OTHER),
    ],
)
def test_processes_are_told_apart_by_command_line(
    name: str, cmdline: list[str], component: Component
) -> None:
    assert component_of(name, cmdline) is component


def test_the_sampler_sees_this_process() -> None:
    with CpuBudgetSampler(interval_s=0.05) as sampler:
        sum(i * i for i in range(200_000))  # some CPU of this process
    doc = sampler.as_json()
    assert doc["components"]["tap bench (this process)"]["cpu_s"] > 0
    assert doc["wall_s"] >= 0


def test_the_bench_table_prints_the_budget_per_component() -> None:
    from bench.report import rows

    components = budget({}, keyed(s(1, Component.API, 10.0), s(2, Component.REDIS, 2.0)), 10.0)
    cpu = summary(components, 10.0, 2, write_scale=1.0, read_scale=8.0)
    reads = {
        "writes_per_s": 2000, "reads_per_s": 62.5, "offered_writes_per_s": 2000,
        "offered_reads_per_s": 500, "latest_p50_ms": 1, "latest_p99_ms": 2,
        "latest_postgres_p50_ms": 1, "latest_postgres_p99_ms": 2, "latest_ratio_p99": 1,
        "board_p50_ms": 1, "board_p99_ms": 2, "board_postgres_p50_ms": 1,
        "board_postgres_p99_ms": 2, "board_ratio_p99": 1, "stream_p50_ms": 1,
        "stream_p99_ms": 2, "stream_events": 3,
        "goals": {"latest_p99_ms": 10, "board_p99_ms": 25, "stream_p99_ms": 1000},
        "cpu_budget": cpu,
    }  # fmt: skip
    table = {r[0].strip(): r for r in rows({"machine": {"nproc": 2}, "reads": reads})}
    assert table["CPU budget: cores used, all components"][1:] == (
        "1.20 of 2",
        "over 10.00 s; offered load needs ~9.60",
        "DOES NOT FIT",
    )
    assert table["tap api"][1:3] == ("1.00 cores", "at offered load ~8.00 cores")
    # Redis serves writes and reads: scaled by the larger ratio (x8).
    assert table["redis-server"][1:3] == ("0.20 cores", "at offered load ~1.60 cores")


def test_the_harness_is_not_projected_with_the_load() -> None:
    components = budget({}, keyed(s(1, Component.BENCH, 2.0), s(2, Component.MOTO, 1.0)), 10.0)
    doc = summary(components, 10.0, 2, write_scale=10.0, read_scale=25.0)
    assert doc["projected_cores_at_offered_load"] == {
        "tap bench (this process)": 0.2,
        "moto (secrets)": 0.1,
    }
