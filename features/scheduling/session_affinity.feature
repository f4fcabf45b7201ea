Feature: Session affinity
  A session's next turn goes back to the replica that served its last one while that replica
  is ready and has a free slot, so its KV cache is reused, and the placement says so with
  kv_warmth true.

  @feature:session_affinity @ORCH-3009 @OC-CORE-1013
  Scenario: Each session's next turn returns to the replica of its first turn
    Given a replica set whose engine claims "session_affinity"
    And the replica set has at least 2 replicas
    When sessions "A" and "B" run their first turns at the same time
    And sessions "A" and "B" run their next turns one after the other
    Then the next turns of "A" and "B" report kv_warmth true on their first replicas
