Feature: Bounded queues and full-queue policies
  Every pool's queue has a hard cap. When it is full the pool applies exactly one configured
  policy (reject, drop-lru or shed-low-priority) and a refusal is a 429 that names the policy
  and says when to retry. Slots and queues are filled with "[[sim tokens=100 itl_ms=300]]"
  tasks, all canceled when the scenario ends; which replica set uses which policy is learned
  from the target's answers.

  @ORCH-2007 @OC-CTRL-2011
  Scenario: A full queue answers 429 with backoff headers and the policy in force
    When I fill replica set queues until one answers 429
    Then the response status is 429
    And the response carries Retry-After and X-Backoff-Ms
    And the body matches the BackpressureErrorEnvelope schema
    And the policy label names a full-queue policy

  @ORCH-2007
  Scenario: The backoff headers and body of a 429 agree
    When I fill replica set queues until one answers 429
    Then Retry-After is X-Backoff-Ms in whole seconds, rounded up
    And the error is retriable with retry_after_ms equal to X-Backoff-Ms

  @ORCH-3005 @OC-CORE-1002 @OC-CORE-1001 @ORCH-3004 @stands-on:OC-CTRL-2011
  Scenario: Under reject the newcomer is refused and the queue is left alone
    When I fill the queue of a replica set whose full-queue policy is "reject"
    Then the response status is 429
    And the error code is ADMISSION_REJECT
    And the policy label is "reject"
    And the oldest queued task of the fill is still queued

  @ORCH-3005 @OC-CORE-1002 @OC-CORE-1001
  Scenario: Under drop-lru the newcomer is admitted and the oldest queued task is dropped
    When I fill the queue of a replica set whose full-queue policy is "drop-lru"
    Then the response status is 202
    And the oldest queued task of the fill ended with error QUEUE_FULL_DROP_LRU

  @ORCH-3005 @OC-CORE-1002 @OC-CORE-1001
  Scenario: Under shed-low-priority interactive work is refused when nothing lower waits
    When I fill the queue of a replica set whose full-queue policy is "shed-low-priority"
    Then the response status is 429
    And the error code is ADMISSION_REJECT
    And the policy label is "shed-low-priority"
    And the oldest queued task of the fill is still queued

  @ORCH-3005 @OC-CORE-1002
  Scenario: Under shed-low-priority the oldest batch task makes room for interactive work
    When I fill the queue of a replica set whose full-queue policy is "shed-low-priority" with batch tasks
    And I submit an interactive task to the same replica set
    Then the response status is 202
    And the oldest queued task of the fill ended with error ADMISSION_REJECT
