// Stands in for Node built-ins that @xmpp/client's DNS resolution imports.
// That code only runs for a service without a scheme; the page always
// connects to a ws(s):// URL, so nothing here is ever called.
export default {};
