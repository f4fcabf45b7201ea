Feature: Planning fields in SSE metrics events
  SSE metrics events carry additive planning fields such as on_time_probability (a number),
  queue_depth (an integer) and kv_warmth (a boolean) that clients may use to plan.

  Background:
    Given any replica set

  @ORCH-3100
  Scenario: Metrics events carry planning fields of their documented types
    Given a task with prompt "[[sim tokens=4]] planning"
    When I submit it
    And I read its stream
    Then a metrics event carries planning fields of the documented types
