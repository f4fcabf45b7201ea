@feature:sse_resume @stands-on:ORCH-2002
Feature: Resuming a task stream after a lost connection
  A target that claims sse_resume gives every token event an SSE id line equal to its index,
  and a stream request carrying Last-Event-ID continues with the next token, without a second
  started event, a duplicate or a gap (specs/20 section 4.1). Targets that do not claim the
  feature are not judged here (not-supported).

  Background:
    Given any replica set

  @OC-CTRL-2024
  Scenario: Every token event carries its index as its event id
    Given a task with prompt "[[sim tokens=5]] resume ids"
    When I submit it
    And I read its stream
    Then every token event has its own id line equal to its index

  @OC-CTRL-2024
  Scenario: A reconnect with Last-Event-ID resumes after that token
    Given a task with prompt "[[sim tokens=8 itl_ms=60]] resume"
    When I submit it
    And I read its stream until 3 tokens arrived and drop the connection
    And I reconnect with Last-Event-ID of the last token received
    Then the resumed stream starts at the next token without started
    And the tokens before and after the reconnect count up from 0 by one to the end
