Feature: Engine failures and the watchdog end streams with typed errors
  A task whose engine fails mid-stream, or stops producing tokens for longer than the idle
  timeout, ends with one SSE error event carrying an ErrorKind code, and its slot is freed.

  Background:
    Given any replica set

  @OC-CTRL-2030 @ORCH-2006
  Scenario: An engine failure mid-stream ends the stream with WORKER_RESET
    Given a task with prompt "[[sim tokens=6 fail_after=2]] fails"
    When I submit it
    And I read its stream
    Then the stream ends with an error event
    And the error event is a typed error envelope
    And the error event code is WORKER_RESET

  @slow @ORCH-3016 @OC-CORE-1022
  Scenario: The watchdog ends a task that stops producing tokens
    Given a task with prompt "[[sim tokens=3 itl_ms=7000]] stalls"
    When I submit it
    And I read its stream for at most 15 seconds
    Then the stream has 1 token event
    And the error event code is DECODE_TIMEOUT
    And the replica set reports all its slots free within 2 seconds
