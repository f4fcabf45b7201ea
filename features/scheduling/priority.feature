Feature: Dequeue order
  Queued interactive work is dispatched before queued batch work, and tasks of one class leave
  in arrival order. Slots are freed one at a time, so each freed slot shows which queued task
  the scheduler picks next.

  @OC-CORE-1004 @ORCH-3004 @stands-on:ORCH-2003 @stands-on:ORCH-2104
  Scenario: Interactive tasks start before batch tasks that queued earlier
    Given a replica set with at least 1 slot
    And all slots of the replica set are busy
    And a queued batch task "B1" with prompt "[[sim tokens=100 itl_ms=300]] b1"
    And a queued batch task "B2" with prompt "[[sim tokens=100 itl_ms=300]] b2"
    And a queued interactive task "I1" with prompt "[[sim tokens=100 itl_ms=300]] i1"
    And a queued interactive task "I2" with prompt "[[sim tokens=100 itl_ms=300]] i2"
    When I free the slots one at a time
    Then the queued tasks started in the order I1, I2, B1, B2
