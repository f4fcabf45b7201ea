Feature: Typed error envelopes
  Every error answer is an ErrorEnvelope whose code is one of the ErrorKind values, spelled
  exactly, with a human-readable message. These scenarios judge the body of the error; whether
  a request had to be refused, and with which status, is the business of the requirements of
  admission, guardrails and auth, so a target that accepts one of these requests leaves the
  scenario nothing to judge (an error, not a failure).

  Background:
    Given any replica set

  @ORCH-2006 @OC-CTRL-2030
  Scenario Outline: An invalid task field is refused with INVALID_PARAMS
    Given a task with prompt "[[sim tokens=1]] invalid"
    And the task has field "<field>" set to <value>
    When I submit it
    Then the answer is an error
    And the body is a typed error envelope
    And the error code is INVALID_PARAMS

    Examples:
      | field      | value        |
      | workload   | "translate"  |
      | priority   | "urgent"     |
      | max_tokens | -1           |
      | task_id    | "not-a-uuid" |
      | ctx        | "wide"       |
      | engine     | "openai"     |

  @ORCH-2006 @OC-CTRL-2030
  Scenario Outline: A task without a required field is refused with INVALID_PARAMS
    Given a task with prompt "[[sim tokens=1]] incomplete"
    And the task has no field "<field>"
    When I submit it
    Then the answer is an error
    And the body is a typed error envelope
    And the error code is INVALID_PARAMS

    Examples:
      | field      |
      | task_id    |
      | session_id |
      | model_ref  |
      | max_tokens |

  @ORCH-2006 @OC-CTRL-2030
  Scenario: A reused task_id is refused with INVALID_PARAMS
    Given a task with prompt "[[sim tokens=1]] twice"
    When I submit it
    And I submit it again
    Then the answer is an error
    And the body is a typed error envelope
    And the error code is INVALID_PARAMS

  @ORCH-2006 @OC-CTRL-2030
  Scenario: A body that is not JSON is refused with INVALID_PARAMS
    When I submit a body that is not JSON
    Then the answer is an error
    And the body is a typed error envelope
    And the error code is INVALID_PARAMS

  @ORCH-2006 @OC-CTRL-2030
  Scenario Outline: Unknown resources are typed 404 answers
    When I send <method> "<path>"
    Then the answer is an error
    And the body is a typed error envelope
    And the error code is INVALID_PARAMS

    Examples:
      | method | path                        |
      | GET    | /v1/tasks/{unknown}/stream  |
      | POST   | /v1/tasks/{unknown}/cancel  |
      | GET    | /v1/sessions/{unknown}      |
      | DELETE | /v1/sessions/{unknown}      |
      | GET    | /v1/pools/{no_pool}/health  |
