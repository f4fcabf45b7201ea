Feature: Admission of tasks
  POST /v1/tasks admits a valid task with 202 and tells the client where it stands; it
  refuses an invalid one before anything is queued.

  Background:
    Given any replica set

  @ORCH-2001
  Scenario: An admitted task gets its admission facts
    Given a task with prompt "[[sim tokens=2]] admission"
    When I submit it
    Then the response status is 202
    And the body matches the AdmissionResponse schema
    And the admission names the submitted task_id
    And the admission reports queue_position, predicted_start_ms and backoff_ms

  @ORCH-2001
  Scenario: A task without a seed is admitted
    Given a task with prompt "[[sim tokens=3]] no seed given"
    And the task has no field "seed"
    When I submit it
    Then the response status is 202
    And the admission names the submitted task_id

  @ORCH-2008
  Scenario: Every engine the target serves is accepted
    When I submit a short task to every replica set
    Then every submission is admitted with 202

  @ORCH-2008
  Scenario Outline: A task naming an engine outside the enum is invalid
    Given a valid task like it is admitted
    And a task with prompt "[[sim tokens=1]] engine"
    And the task has field "engine" set to <engine>
    When I submit it
    Then the response status is 400
    And the task was not enqueued

    Examples:
      | engine     |
      | "openai"   |
      | "LLAMACPP" |
      | "sglang"   |
      | ""         |

  @ORCH-3024
  Scenario: A task_id names one job only
    Given a task with prompt "[[sim tokens=1]] once"
    When I submit it
    And I submit it again
    Then the response statuses were 202, 400
