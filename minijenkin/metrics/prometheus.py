"""Figures in the Prometheus text exposition format, read on every scrape."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from minijenkin.metrics.figures import FIGURES, Figure, Reading, read_figures


class FigureCollector(Collector):
    """Yield one gauge per figure from readings taken for this scrape.

    prometheus-client calls `collect()` synchronously while the database is
    read asynchronously, so the route reads the figures first and hands the
    readings over; nothing is cached between scrapes.
    """

    def __init__(self, readings: Sequence[Reading], figures: Sequence[Figure] = FIGURES) -> None:
        self.readings = readings
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        by_figure: dict[str, list[Reading]] = {}
        for reading in self.readings:
            by_figure.setdefault(reading.figure.name, []).append(reading)
        for figure in self.figures:
            family_type = CounterMetricFamily if figure.counter else GaugeMetricFamily
            family = family_type(figure.metric, figure.help, labels=list(figure.labels))
            for reading in by_figure.get(figure.name, ()):
                family.add_metric([reading.labels[label] for label in figure.labels],
                                  reading.value)
            yield family


async def scrape(conn: psycopg.AsyncConnection) -> bytes:
    """Read every figure and render it in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FigureCollector(await read_figures(conn)))
    return generate_latest(registry)
