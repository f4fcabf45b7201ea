@feature:artifacts
Feature: Artifacts
  Plans, summaries, diffs and traces are stored under content-addressed ids with tags and
  lineage, and read back with their metadata by the tenant that stored them only.

  @ORCH-3097 @OC-CTRL-2065
  Scenario: An artifact is stored under its content address, and storing it again adds tags
    When I store a plan artifact with tags "agent, parser-fix"
    Then the first artifact was stored under its content address
    When I store the same artifact again with tags "reviewed"
    Then storing it again gave the same id with both sets of tags

  @ORCH-3097 @ORCH-3098 @OC-CTRL-2065 @OC-CTRL-2066
  Scenario: An artifact is read back with its tags, lineage and timestamps
    When I store a plan artifact with tags "agent"
    And I store a diff artifact derived from it
    Then the derived artifact was stored under its content address
    When I read the first artifact
    Then the first artifact is returned with its content, tags and created_ms
    When I read the derived artifact
    Then the derived artifact is returned with its content, tags and created_ms
    And the derived artifact names its parent

  @ORCH-3098 @OC-CTRL-2066 @needs:tenant_key
  Scenario: Another tenant's key cannot read an artifact
    When I store a summary artifact with tags "private"
    Then the first artifact was stored under its content address
    When I read the first artifact with the tenant key
    Then the response status is 403
