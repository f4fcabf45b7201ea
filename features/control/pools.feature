Feature: Pool health, drain and reload
  The control plane reports each pool's liveness, readiness and draining state, drains a pool
  so that it takes no new work, and reloads it atomically. Scenarios that drain or reload pick
  a pool that alone serves its replica set and reload it with its own model at the end.

  @ORCH-2103 @OC-CTRL-2001
  Scenario: Every pool reports its health
    When I read the health of every pool
    Then every pool health answer is a complete PoolHealth

  @ORCH-2101 @OC-CTRL-2002 @stands-on:ORCH-2103
  Scenario: A drained pool takes no new dispatches while running work finishes
    Given a pool that alone serves its replica set
    And a task on the pool that streams 4 tokens over 600 ms is running
    When I drain the pool with a deadline of 10000 ms
    Then the response status is 202
    And the pool reports draining
    And a new task for the pool is not dispatched
    And the running task finished normally

  @ORCH-3010 @OC-CORE-1010 @stands-on:ORCH-2101 @stands-on:ORCH-2103
  Scenario: A pool that is not ready receives no task
    Given a pool that alone serves its replica set
    And the pool is drained
    And the pool reports draining
    Then a new task for the pool is not dispatched

  @ORCH-2102 @OC-CTRL-2003 @stands-on:ORCH-2103
  Scenario: A reload switches the pool over and ends the drain
    Given a pool that alone serves its replica set
    And the pool is drained
    When I reload the pool with its current model
    Then the response status is 202
    And the pool becomes ready and stops draining within 10 seconds
    And a task for the pool completes within 5 seconds

  @OC-CTRL-2003 @stands-on:ORCH-2103
  Scenario: A failed reload keeps the pool on its previous model
    Given a pool that alone serves its replica set
    When I reload the pool with a model that does not exist
    Then a task for the pool completes within 10 seconds
    And the pool is ready and not draining within 10 seconds

  @OC-POOL-3003
  Scenario: A failed reload is reported in last_error
    Given a pool that alone serves its replica set
    When I reload the pool with a model that does not exist
    Then the pool reports the reload failure in last_error within 10 seconds
