Feature: Preemption of running and queued work
  Urgent work makes room. Soft preemption gives up queued lower-priority work, the task that
  would start last first. Hard preemption interrupts a running lower-priority decode, but only
  on an engine that proved it can save the decode and resume it: the interrupted task reports
  preempted with its resumable state, goes back to the queue and ends exactly as it would have
  without the interruption. Where the engine cannot save the decode, running work is never
  interrupted.

  @feature:preemption_soft @ORCH-3085 @ORCH-3080 @ORCH-3082
  Scenario: Soft preemption evicts the queued batch task that would start last
    Given a replica set whose engine claims "preemption_soft" but not "preemption_hard"
    And its slots run and its queue holds batch work, under a policy that does not shed it
    When I submit an interactive task "U" with prompt "[[sim tokens=1 hold_ms=30000]] urgent"
    Then task "U" is admitted
    And the queued batch task admitted last ended with error ADMISSION_REJECT
    And the other queued batch tasks that were waiting are still queued
    And no batch task reports preempted
    And the counter preemptions_total for the engine with mode "soft" grew by 1

  @feature:preemption_hard @ORCH-3086 @ORCH-3087
  Scenario: Hard preemption interrupts a running batch task, which resumes where it stopped
    Given a replica set whose engine claims "preemption_hard"
    And every slot of the replica set runs a batch task with prompt "[[sim tokens=24 itl_ms=50]] long batch work"
    When I submit an interactive task "U" with prompt "[[sim tokens=2]] urgent"
    Then task "U" streams its first token before any batch task ends
    And exactly one batch task reports preempted with a resumable state
    And the preempted task resumes and streams all 24 tokens as an uninterrupted run does
    And the counter preemptions_total for the engine with mode "hard" grew by 1
    And the counter resumptions_total for the engine grew by 1

  @feature:preemption_soft @ORCH-3088 @ORCH-3090
  Scenario: An engine that has not proven interruptible decode is never hard-preempted
    Given a replica set whose engine claims "preemption_soft" but not "preemption_hard"
    And every slot of the replica set runs a batch task with prompt "[[sim tokens=20 itl_ms=50]] batch work"
    When I submit an interactive task "U" with prompt "[[sim tokens=2]] urgent"
    Then task "U" streams its first token only after a batch task ended
    And no batch task reports preempted and each ends with all 20 tokens
    And the counter preemptions_total for the engine with mode "hard" grew by 0

  @feature:preemption_hard @ORCH-3088 @ORCH-3090
  Scenario: A decode the engine cannot save is not hard-preempted
    Given a replica set whose engine claims "preemption_hard"
    And every slot of the replica set runs a batch task with prompt "[[sim tokens=20 itl_ms=50 interruptible=false]] batch work"
    When I submit an interactive task "U" with prompt "[[sim tokens=2]] urgent"
    Then task "U" streams its first token only after a batch task ended
    And no batch task reports preempted and each ends with all 20 tokens
    And the counter preemptions_total for the engine with mode "hard" grew by 0
