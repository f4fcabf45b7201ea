Feature: Sessions
  A task's session_id opens a session; the client can read its TTL, turns and KV state, and
  end it. Sessions have bounded lifetimes.

  Background:
    Given any replica set

  @ORCH-2004
  Scenario: A session reports its TTL, turns and KV state
    Given a task with prompt "[[sim tokens=2]] session"
    When I submit it
    And I read its stream
    And I read its session
    Then the response status is 200
    And the body matches the SessionInfo schema
    And the session reports 1 turn
    And the session's ttl_ms_remaining is positive

  @ORCH-2005 @stands-on:ORCH-2004
  Scenario: Deleting a session ends it
    Given a task with prompt "[[sim tokens=1]] to delete"
    When I submit it
    And I read its stream
    And I delete its session
    Then the response status is 204
    When I read its session
    Then the response status is 404

  @ORCH-3021 @ORCH-2004
  Scenario: A session refuses turns beyond its limit
    Given a task with prompt "[[sim tokens=1]] turn"
    When I submit turns in its session until one is refused, at most 64
    Then a turn was refused before the limit of the scenario
    And the session reports as many turns as were admitted
