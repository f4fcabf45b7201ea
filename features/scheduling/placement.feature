Feature: Placement on the least-loaded ready replica
  Concurrent tasks of one replica set run side by side on its free slots instead of waiting
  behind each other, and the set's slot counts show it.

  @OC-CORE-1012 @ORCH-3008 @stands-on:ORCH-2104
  Scenario: Two concurrent tasks on a set with two slots run at once
    Given a replica set with at least 2 slots
    And the replica set is idle
    When I start 2 tasks with prompt "[[sim tokens=100 itl_ms=300]] side by side"
    Then all of them stream their first token within 2 seconds

  @ORCH-3019
  Scenario: A replica set's slot counts show the tasks it runs
    Given a replica set with at least 2 slots
    And the replica set is idle
    When I start 2 tasks with prompt "[[sim tokens=100 itl_ms=300]] side by side"
    And all of them have streamed their first token within 2 seconds
    Then the replica set reports 2 busy slots
