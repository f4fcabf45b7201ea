Feature: Deterministic output within a replica set
  Two tasks with the same prompt, parameters and seed on one replica set stream the same
  tokens.

  @ORCH-3045 @OC-CORE-1030 @stands-on:ORCH-2002
  Scenario: Same prompt, parameters and seed give the same token stream
    Given any replica set
    And a task "A" with prompt "[[sim tokens=8]] the same words"
    And task "A" has field "seed" set to 4242
    And a task "B" with prompt "[[sim tokens=8]] the same words"
    And task "B" has field "seed" set to 4242
    When I submit task "A"
    And I read the stream of task "A"
    And I submit task "B"
    And I read the stream of task "B"
    Then tasks "A" and "B" streamed the same tokens
