@feature:policy_host
Feature: A policy host seen from outside
  An orchestrator may run policy plugins (specs/50). What a client can see of them: a plugin's
  typed refusal arrives as ADMISSION_REJECT with the policy label `policy:<plugin id>:<reason>`,
  the same request gets the same decision, and a plugin that spins, exhausts its memory, traps
  or answers garbage costs at most its bound: the host applies its built-in rules and the queue
  keeps serving. The scenarios run against a target that claims a policy host in
  GET /v1/capabilities (the engine feature flag `policy_host`, with the `policy_host` object
  describing it) and has the harness's probe plugin `llorch-probe` loaded on the
  admission hook (examples/policies/llorch_probe); the probe is driven by `max_tokens`. The
  logging scenario also needs the target's JSON-lines log (--target-log FILE).

  Background:
    Given the target runs the policy probe plugin

  @ORCH-3048
  Scenario: A plugin's typed refusal reaches the client with its policy label
    Given a probe task with max_tokens 337
    When I submit it
    Then the response status is 429
    And the error code is ADMISSION_REJECT
    And the policy label is "policy:llorch-probe:probe_rejected"
    And the body matches the BackpressureErrorEnvelope schema

  @OC-POLICY-4020 @needs:log
  Scenario: The call is logged with the plugin, its version, the decision and the duration
    Given a probe task with max_tokens 337
    When I submit it with correlation id "llorch-policy-log"
    Then the target's log records the call of "llorch-probe" on the admission hook
    And that record names the decision "probe_rejected" and the correlation id

  @OC-POLICY-4001 @ORCH-3048
  Scenario: The same request gets the same decision
    Given a probe task with max_tokens 337
    When I submit it
    And I submit a fresh copy of it
    Then both answers are the same refusal

  @OC-POLICY-4011 @ORCH-3048
  Scenario Outline: A plugin that <fault> leaves admission to the built-in rules
    Given a probe task with max_tokens <trigger>
    When I submit it and time the answer
    Then the response status is 202
    And the answer came within 2 seconds
    When I read its stream
    Then the stream ends with end
    And an ordinary task submitted now is admitted and finishes

    Examples:
      | trigger | fault                       |
      | 333     | spins forever               |
      | 334     | exhausts its memory         |
      | 335     | traps                       |
      | 336     | answers an invalid decision |
