// The sign-in page (templates/login.html).
// Keep ?next= so the server sends the user back where they came from.
document.getElementById("login").action = "/login" + location.search;
