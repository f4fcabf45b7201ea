Feature: API keys guard both planes
  Every request but the public liveness and metrics paths needs a valid API key: a missing or
  unknown key gets 401, a key without the needed permission 403. Each refusal is first shown
  not to be the target refusing everything: the same request with the target's own key is not
  refused. Error answers never repeat a key, and carry the typed error envelope like any other
  error answer.

  Background:
    Given any replica set

  @ORCH-3035 @OC-CTRL-2040
  Scenario Outline: A request without an API key is refused with 401
    Given the target accepts <method> "<path>" with its key
    When I send <method> "<path>" without credentials
    Then the response status is 401

    Examples:
      | method | path                       |
      | POST   | /v1/tasks                  |
      | GET    | /v1/tasks/{task}/stream    |
      | POST   | /v1/tasks/{task}/cancel    |
      | GET    | /v1/sessions/{session}     |
      | DELETE | /v1/sessions/{session}     |
      | GET    | /v1/replicasets            |
      | GET    | /v1/capabilities           |
      | GET    | /v1/pools/{pool}/health    |
      | POST   | /v1/pools/{no_pool}/drain  |
      | POST   | /v1/pools/{no_pool}/reload |

  @ORCH-3035 @OC-CTRL-2040
  Scenario Outline: A request with an unknown API key is refused with 401
    Given the target accepts <method> "<path>" with its key
    When I send <method> "<path>" with the unknown key "llorch-compliance-unknown-key"
    Then the response status is 401

    Examples:
      | method | path            |
      | POST   | /v1/tasks       |
      | GET    | /v1/replicasets |

  @ORCH-3035 @needs:data_plane_key
  Scenario: A key limited to the data plane is refused on the control plane with 403
    Given a data-plane-only API key
    And that key is accepted for GET "/v1/sessions/{session}"
    When I send GET "/v1/replicasets" with that key
    Then the response status is 403

  @ORCH-2006 @OC-CTRL-2030 @stands-on:ORCH-3035
  Scenario: A 401 carries a typed error envelope
    When I send GET "/v1/replicasets" without credentials
    Then the answer is an error
    And the body is a typed error envelope

  @ORCH-2006 @OC-CTRL-2030 @needs:data_plane_key @stands-on:ORCH-3035
  Scenario: A 403 carries a typed error envelope
    Given a data-plane-only API key
    When I send GET "/v1/replicasets" with that key
    Then the answer is an error
    And the body is a typed error envelope

  @OC-CTRL-2041 @stands-on:ORCH-3035
  Scenario: An error answer does not repeat the key it was sent
    When I send GET "/v1/replicasets" with the bearer key "llorch-canary-6f1c2a9e4b7d"
    Then the response is a refusal
    And the response does not echo the presented key
    When I send GET "/v1/capabilities" with the X-API-Key "llorch-canary-0b9d4e3a71c2"
    Then the response is a refusal
    And the response does not echo the presented key

  @OC-CTRL-2041
  Scenario: Error answers to an authenticated caller do not contain its key
    Given a task with prompt "[[sim tokens=1]] secret"
    And the task has field "ctx" set to -1
    When I submit it
    And I send GET "/v1/tasks/{unknown}/stream"
    And I send GET "/v1/pools/{no_pool}/health"
    Then no error answer of this scenario contains the target's API key
