Feature: Correlation ids on every answer
  Every operation of both planes accepts X-Correlation-Id and every answer carries one: the
  caller's value, or one the server made up. 204 answers and SSE streams included.

  Background:
    Given any replica set

  @ORCH-2009
  Scenario Outline: The caller's correlation id comes back
    When I call "<operation>" with correlation id "llorch-<tag>"
    Then the response carries X-Correlation-Id "llorch-<tag>"

    Examples:
      | operation              | tag      |
      | submit a task          | submit   |
      | stream a task          | stream   |
      | cancel a task          | cancel   |
      | read a session         | session  |
      | delete a session       | delete   |
      | read pool health       | health   |
      | list replica sets      | sets     |
      | read capabilities      | caps     |
      | drain an unknown pool  | drain404 |
      | read an unknown task   | task404  |
      | submit an invalid task | task400  |
      | call without a key     | auth401  |

  @ORCH-2009
  Scenario Outline: The server makes up a correlation id when none is sent
    When I call "<operation>" without a correlation id
    Then the response carries a generated X-Correlation-Id

    Examples:
      | operation              |
      | submit a task          |
      | stream a task          |
      | cancel a task          |
      | delete a session       |
      | list replica sets      |
      | submit an invalid task |
