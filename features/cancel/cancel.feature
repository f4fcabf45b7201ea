Feature: Cancelling tasks
  POST /v1/tasks/{id}/cancel stops a queued or running task and answers 204; once it has
  answered, no further token reaches the client and the task's slot is free again.

  @ORCH-3017 @stands-on:ORCH-2003 @stands-on:ORCH-2104
  Scenario: Cancelling running tasks frees their slots
    Given a replica set with at least 1 slot
    And all slots of the replica set are busy
    When I cancel the tasks holding the slots
    Then every cancel response status is 204
    And the replica set reports all its slots free within 2 seconds
    And a new task on the replica set streams its first token within 2 seconds

  @ORCH-2003 @stands-on:ORCH-2002
  Scenario: A running task stops when it is cancelled
    Given any replica set
    And a task with prompt "[[sim tokens=40 itl_ms=250]] cancel me"
    When I submit it
    And I cancel it after 2 tokens
    Then the cancel response status is 204
    And fewer than 40 tokens were streamed
    And the stream ended soon after the cancel

  @ORCH-3026 @OC-CTRL-2012 @stands-on:ORCH-2003 @stands-on:ORCH-2002
  Scenario: No token follows an acknowledged cancel
    Given any replica set
    And a task with prompt "[[sim tokens=40 itl_ms=250]] cancel me"
    When I submit it
    And I cancel it after 2 tokens
    Then no token event arrived after the cancel was acknowledged
    And the stream ends with end
    And the end event reports as many tokens as were streamed

  @OC-CORE-1005 @ORCH-2003 @stands-on:ORCH-2002 @stands-on:ORCH-2104
  Scenario: A task cancelled while queued is never dispatched
    Given a replica set with at least 1 slot
    And all slots of the replica set are busy
    And a queued interactive task "Q" with prompt "[[sim tokens=3]] queued"
    When I cancel task "Q"
    Then the cancel response status is 204
    And task "Q" ended without any token
    When I cancel the tasks holding the slots
    Then task "Q" still has no token after 1 second

  @ORCH-2003
  Scenario: Cancelling a finished task is harmless
    Given any replica set
    And a task that has finished, with prompt "[[sim tokens=1]] done"
    When I cancel it
    And I cancel it again
    Then every cancel response status is 204
