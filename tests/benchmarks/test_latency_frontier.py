"""The Pareto front of benchmarks.latency_frontier."""

from benchmarks.latency_frontier import pareto


def test_pareto_keeps_only_undominated_points():
  points = [(10.0, 120.0), (5.0, 130.0), (6.0, 140.0), (3.0, 300.0), (10.0, 119.0), (5.0, 130.0)]
  # (10,120) is dominated by (10,119); (6,140) by (5,130); the two (5,130) tie and both stay.
  assert pareto(points) == [1, 3, 4, 5]
