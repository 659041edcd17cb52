/*
 * Room demo pages of wcs, on the official SDK's Room API
 * (flashphoner-room-api.js). One script for the three pages; each page
 * configures it with data-* attributes on <body>:
 *   data-max-participants  remote tiles shown (default 8)
 *   data-screen-share      "true" to offer a screen share button
 * URL parameters override the defaults: ?server=ws://host:8080&roomName=r&login=me
 * (&relay=1: media only through the TURN relays the server names).
 * Chat text is always inserted with textContent: a message is never HTML.
 */
(function () {
  "use strict";
  var Flashphoner = RoomApi.sdk;
  var SESSION = Flashphoner.constants.SESSION_STATUS;
  var STREAM = Flashphoner.constants.STREAM_STATUS;
  var EVENT = RoomApi.events;

  var page = document.body.dataset;
  var maxTiles = parseInt(page.maxParticipants || "8", 10);
  var params = new URLSearchParams(window.location.search);
  var $ = function (id) { return document.getElementById(id); };

  var connection = null, room = null, cameraStream = null, screenStream = null;
  // What the status says once the session is closed: set by a leave or a
  // refused join, which both close the session on purpose.
  var closing = null;
  var tiles = {};          // login -> tile element
  var playing = {};        // stream name -> SDK stream

  function defaultServer() {
    var secure = window.location.protocol === "https:";
    return (secure ? "wss://" : "ws://") + window.location.hostname + (secure ? ":8443" : ":8080");
  }

  function randomName(prefix) {
    return prefix + "-" + Math.random().toString(16).slice(2, 8);
  }

  function setStatus(text, kind) {
    var status = $("status");
    status.textContent = text;
    status.className = "status " + (kind || "");
  }

  function setJoined(joined) {
    $("joinBtn").disabled = joined;
    $("leaveBtn").disabled = !joined;
    $("sendBtn").disabled = !joined;
    $("chatInput").disabled = !joined;
    $("server").disabled = joined;
    $("login").disabled = joined;
    $("roomName").disabled = joined;
    if ($("shareBtn")) $("shareBtn").disabled = !joined;
  }

  function addChat(from, text, mine) {
    var line = document.createElement("div");
    line.className = "chat-line" + (mine ? " mine" : "");
    var who = document.createElement("b");
    who.textContent = from + ": ";
    var body = document.createElement("span");
    body.className = "chat-text";
    body.textContent = text;
    line.appendChild(who);
    line.appendChild(body);
    $("chatLog").appendChild(line);
    $("chatLog").scrollTop = $("chatLog").scrollHeight;
  }

  function tileFor(login) {
    if (tiles[login]) return tiles[login];
    if (Object.keys(tiles).length >= maxTiles) return null;
    var tile = document.createElement("div");
    tile.className = "tile";
    tile.dataset.login = login;
    var label = document.createElement("div");
    label.className = "tile-label";
    label.textContent = login;
    var state = document.createElement("div");
    state.className = "tile-state";
    state.textContent = "joined";
    var displays = document.createElement("div");
    displays.className = "tile-displays";
    tile.appendChild(displays);
    tile.appendChild(label);
    tile.appendChild(state);
    $("participants").appendChild(tile);
    tiles[login] = tile;
    return tile;
  }

  function removeTile(login) {
    var tile = tiles[login];
    if (!tile) return;
    tile.parentNode.removeChild(tile);
    delete tiles[login];
  }

  function tileState(login, text) {
    var tile = tiles[login];
    if (tile) tile.querySelector(".tile-state").textContent = text;
  }

  function playStreams(participant) {
    var login = participant.name();
    var tile = tileFor(login);
    if (!tile) return;
    participant.getStreams().forEach(function (remote) {
      var name = remote.streamName();
      if (playing[name]) return;
      var display = document.createElement("div");
      display.className = "display";
      display.dataset.stream = name;
      tile.querySelector(".tile-displays").appendChild(display);
      tileState(login, "connecting video…");
      playing[name] = remote.play(display).on(STREAM.PLAYING, function () {
        tileState(login, "playing");
      }).on(STREAM.STOPPED, function () {
        stopped(name, login, "stopped");
      }).on(STREAM.FAILED, function (stream) {
        stopped(name, login, "failed: " + (stream.getInfo() || "unknown reason"));
      });
    });
  }

  function stopped(name, login, text) {
    delete playing[name];
    var display = document.querySelector('.display[data-stream="' + CSS.escape(name) + '"]');
    if (display) display.parentNode.removeChild(display);
    tileState(login, text);
  }

  function publishCamera() {
    setStatus("joined " + room.name() + ", publishing…", "busy");
    cameraStream = room.publish({
      display: $("localVideo"),
      constraints: {audio: true, video: true},
      record: $("record") ? $("record").checked : false
    }).on(STREAM.PUBLISHING, function () {
      setStatus("joined " + room.name() + ", publishing", "ok");
    }).on(STREAM.FAILED, function (stream) {
      setStatus("joined " + room.name() + ", publishing failed: " + (stream.getInfo() || "unknown reason"), "error");
    }).on(STREAM.UNPUBLISHED, function () {
      cameraStream = null;
    });
  }

  function toggleScreen() {
    if (screenStream) {
      screenStream.stop();
      return;
    }
    $("shareBtn").textContent = "Starting…";
    screenStream = room.publish({
      name: "screen",
      display: $("localScreen"),
      constraints: {video: {type: "screen", withoutExtension: true, width: 1280, height: 720,
                            frameRate: 15}, audio: false}
    }).on(STREAM.PUBLISHING, function () {
      $("shareBtn").textContent = "Stop sharing";
      $("screenStatus").textContent = "sharing screen";
    }).on(STREAM.UNPUBLISHED, function () {
      screenStream = null;
      $("shareBtn").textContent = "Share screen";
      $("screenStatus").textContent = "";
    }).on(STREAM.FAILED, function (stream) {
      screenStream = null;
      $("shareBtn").textContent = "Share screen";
      $("screenStatus").textContent = "screen share failed: " + (stream.getInfo() || "unknown reason");
    });
  }

  function onRoom(joined) {
    room = joined;
    room.on(EVENT.STATE, function (r) {
      setJoined(true);
      r.getParticipants().forEach(function (p) {
        tileFor(p.name());
        playStreams(p);
      });
      publishCamera();
    }).on(EVENT.JOINED, function (p) {
      tileFor(p.name());
      addChat("*", p.name() + " joined", false);
    }).on(EVENT.LEFT, function (p) {
      if (p) {
        addChat("*", p.name() + " left", false);
        removeTile(p.name());
      }
    }).on(EVENT.PUBLISHED, function (p) {
      playStreams(p);
    }).on(EVENT.FAILED, function (r, info) {
      // One session per page: close it, so that Join starts afresh.
      closing = ["join failed: " + (info || "unknown reason"), "error"];
      if (connection) connection.disconnect();
    }).on(EVENT.MESSAGE, function (message) {
      addChat(message.from ? message.from.name() : "?", message.text, false);
    });
  }

  function join() {
    closing = null;
    var server = $("server").value.trim(), login = $("login").value.trim();
    var roomName = $("roomName").value.trim();
    if (!server || !login || !roomName) {
      setStatus("server, name and room are all needed", "error");
      return;
    }
    $("joinBtn").disabled = true;
    setStatus("connecting to " + server + "…", "busy");
    var record = $("record") ? $("record").checked : false;
    // The SDK keeps this object and hands it to every RTCPeerConnection it
    // makes; the TURN servers arrive with getUserData, before any stream.
    var media = {iceServers: []};
    if (params.get("relay") === "1") media.iceTransportPolicy = "relay";
    // ?token=JWT: a signed access token, for a server with auth_required.
    var token = params.get("token") || undefined;
    function onEstablished(session) {
      setStatus("connected, joining " + roomName + "…", "busy");
      onRoom(session.join({name: roomName, record: record}));
    }
    connection = RoomApi.connect({urlServer: server, username: login, token: token,
                                  mediaOptions: media})
    .on(SESSION.ESTABLISHED, onEstablished).on(SESSION.DISCONNECTED, function () {
      var status = closing || ["disconnected from the server", "error"];
      closing = null;
      connection = null;
      reset(status[0], status[1]);
    }).on(SESSION.FAILED, function () {
      reset("connection failed: is the server running at " + server + "?", "error");
    });
    // The Room API drops getUserData; the core session hands it to its
    // ESTABLISHED callback, which the Room API only uses to call ours.
    var core = Flashphoner.getSession(connection.id());
    if (core) {
      core.on(SESSION.ESTABLISHED, function (coreSession, userData) {
        if (userData && Array.isArray(userData.iceServers)) media.iceServers = userData.iceServers;
        if (connection) onEstablished(connection);
      });
    }
  }

  function reset(text, kind) {
    setStatus(text, kind);
    setJoined(false);
    Object.keys(tiles).forEach(removeTile);
    playing = {};
    room = null;
  }

  function leave() {
    if (!room) return;
    $("leaveBtn").disabled = true;
    closing = ["left the room", ""];
    var done = function () {
      // The session is closed too: a page is in one room at a time.
      if (connection) connection.disconnect();
      connection = null;
    };
    room.leave().then(done, done);
  }

  function send() {
    var text = $("chatInput").value;
    if (!room || text === "") return;
    room.getParticipants().forEach(function (p) { p.sendMessage(text); });
    addChat(connection.username(), text, true);
    $("chatInput").value = "";
  }

  function init() {
    try {
      Flashphoner.init({});
    } catch (e) {
      setStatus("this browser does not support WebRTC", "error");
      $("joinBtn").disabled = true;
      return;
    }
    $("server").value = params.get("server") || defaultServer();
    $("roomName").value = params.get("roomName") || randomName("room");
    $("login").value = params.get("login") || randomName("user");
    $("joinBtn").addEventListener("click", join);
    $("leaveBtn").addEventListener("click", leave);
    $("sendBtn").addEventListener("click", send);
    $("chatInput").addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
    });
    if ($("shareBtn")) $("shareBtn").addEventListener("click", toggleScreen);
    setJoined(false);
    setStatus("not connected", "");
  }

  init();
})();
