Feature: Context and token-budget guardrails at admission
  A task whose context is above the model's limit, or whose prompt plus max_tokens does not fit
  its context, is refused with 400 INVALID_PARAMS before it is queued. Refusal and error code
  are separate scenarios because separate requirements ask for them.

  Background:
    Given any replica set

  @ORCH-3014 @OC-CTRL-2010
  Scenario: A context above the model's limit is refused before queueing
    Given a valid task like it is admitted
    And a task with prompt "[[sim tokens=1]] too wide"
    And the task asks for a context one above the engine's ctx_max
    When I submit it
    Then the response status is 400
    And the task was not enqueued

  @OC-CORE-1020
  Scenario: A context above the model's limit is refused with INVALID_PARAMS
    Given a valid task like it is admitted
    And a task with prompt "[[sim tokens=1]] too wide"
    And the task asks for a context one above the engine's ctx_max
    When I submit it
    Then the response status is 400
    And the error code is INVALID_PARAMS
    And the task was not enqueued

  @ORCH-3015 @OC-CTRL-2010
  Scenario: Prompt plus max_tokens above the context is refused before queueing
    Given a valid task like it is admitted
    And a task with a prompt of 400 characters
    And the task has field "ctx" set to 64
    And the task has field "max_tokens" set to 64
    When I submit it
    Then the response status is 400
    And the task was not enqueued

  @OC-CORE-1021
  Scenario: Prompt plus max_tokens above the context is refused with INVALID_PARAMS
    Given a valid task like it is admitted
    And a task with a prompt of 400 characters
    And the task has field "ctx" set to 64
    And the task has field "max_tokens" set to 64
    When I submit it
    Then the response status is 400
    And the error code is INVALID_PARAMS
    And the task was not enqueued

  @ORCH-3015 @OC-CORE-1021
  Scenario: A task that fits its context is admitted
    Given a task with prompt "[[sim tokens=1]] fits"
    And the task has field "ctx" set to 64
    And the task has field "max_tokens" set to 32
    When I submit it
    Then the response status is 202
