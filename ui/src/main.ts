import { mount } from "svelte";
import App from "./App.svelte";
import { startLocale } from "./lib/i18n";
import "./app.css";

const target = document.getElementById("app");
if (!target) throw new Error("index.html has no #app element");

// The language is chosen before anything is shown, so the window never switches under a person.
export default startLocale().then(() => mount(App, { target }));
