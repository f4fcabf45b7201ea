@feature:lifecycle @feature:catalog @needs:catalog_ca
Feature: Model lifecycle
  A catalogued model moves through Draft, Active, Canary, Deprecated and Retired by a control
  plane operation that takes an optional drain deadline. A Deprecated model refuses tasks
  unless they set override, and its pools are drained; a Retired one is unloaded. The gauge
  model_state follows every move. Pools a scenario rolled a model out to get their original
  model back at the end.

  @ORCH-3069 @ORCH-3072 @ORCH-3073
  Scenario: A model moves through the lifecycle states and the gauge follows
    Given a registered Draft model entry
    Then the entry is in the Draft state
    And the model_state gauge shows the entry Draft
    When I move the entry to Active
    Then the state change is accepted
    And the entry is in the Active state
    And the model_state gauge shows the entry Active
    When I move the entry to Canary
    Then the state change is accepted
    And the entry is in the Canary state
    When I move the entry to Deprecated with a drain deadline of 1000 ms
    Then the state change is accepted
    And the entry is in the Deprecated state
    And the model_state gauge shows the entry Deprecated
    When I move the entry to Retired
    Then the state change is accepted
    And the entry is in the Retired state
    When I move the entry to Active
    Then the response status is 400
    And the entry is in the Retired state

  @ORCH-3070 @ORCH-3073 @ORCH-3074 @needs:identity
  Scenario: Deprecated refuses tasks without override and drains the model's pools
    Given a registered Active model entry
    And a pool that alone serves its replica set
    And the pool serves the entry
    And a task for the entry that streams 60 tokens over 6000 ms is running
    When I move the entry to Deprecated with a drain deadline of 300 ms
    Then the state change is accepted
    And the pool reports draining
    And a new task for the entry without override is refused with MODEL_DEPRECATED
    And the running task ended within 3 seconds, before its last token
    And the pool stops draining within 5 seconds
    And a task for the entry with override completes within 10 seconds

  @ORCH-3070 @ORCH-3074 @needs:identity
  Scenario: Retired unloads the model from its pools
    Given a registered Active model entry
    And a pool that alone serves its replica set
    And the pool serves the entry
    When I move the entry to Retired with a drain deadline of 0 ms
    Then the state change is accepted
    And the pool reports not ready within 5 seconds
    And the entry is in the Retired state
    And a task for the entry is refused with MODEL_DEPRECATED
