Feature: Task streams over Server-Sent Events
  GET /v1/tasks/{id}/stream delivers started, then token and metrics events, then exactly one
  end or error, each as an event line and a one-line JSON data line.

  Background:
    Given any replica set

  @ORCH-2002 @OC-CTRL-2020
  Scenario: A stream is text/event-stream framed with event and data lines
    Given a task with prompt "[[sim tokens=4]] framing"
    When I submit it
    And I read its stream as raw text
    Then the stream answer is 200 with content type text/event-stream
    And every event is framed as an event line followed by a data line
    And the raw stream uses only the events started, token, metrics, end and error

  @ORCH-2002 @OC-CTRL-2020
  Scenario: A stream uses only the OrchQueue v1 event names
    Given a task with prompt "[[sim tokens=3 fail_after=2]] names"
    When I submit it
    And I read its stream
    Then the stream uses only the events started, token, metrics, end and error

  @OC-CTRL-2022
  Scenario: Events arrive in order, with JSON object payloads
    Given a task with prompt "[[sim tokens=5]] ordering"
    When I submit it
    And I read its stream
    Then the first event is started
    And every event's data is a JSON object
    And token indices count up from 0 by one
    And exactly one terminal event ends the stream

  @ORCH-2002
  Scenario: Every payload matches its OrchQueue v1 schema
    Given a task with prompt "[[sim tokens=3]] schemas"
    When I submit it
    And I read its stream
    Then every event payload matches its OrchQueue v1 schema

  @OC-CTRL-2021 @OC-CTRL-2050 @ORCH-3029
  Scenario: The started event says where the task stands
    Given a task with prompt "[[sim tokens=1]] where"
    When I submit it
    And I read its stream
    Then the started event carries queue_position and predicted_start_ms

